"""A user whose dispensings are corrected far more often than colleagues'.

A keying error corrected by an adjustment is netted (anomaly.corrections) and is not leakage. But
corrections are also how stock taken off the shelf is made to reappear on paper, and someone who
"corrects" a tenth of their dispensings while colleagues correct one in a thousand is worth a
look. A dispensing later netted by an adjustment is marked; the user's marked dispensings are set
against colleagues' rate at facilities of the same kind (anomaly.peers).
"""

from __future__ import annotations

from anomaly import peers
from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import code, count, msg, nmsg, num, sci

NAME = "corrected"
MIN_CORRECTED = 3
"""Corrections below which a user is not judged: two keying errors in a year happen to anyone."""


population = peers.population


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["recorded_by"] != ""]
    mark = d["corrected_by"] != ""
    if not mark.any():
        return []
    u = peers.assess(d, mark, ["facility_code"], wider=["facility_kind"])
    n_tested = peers.tested(u)
    hits = []
    u = u[u["marked"] >= MIN_CORRECTED]
    for row, mine in peers.reported(u, d[mark.to_numpy()]):
        mine = mine.assign(_c=mine["keyed_quantity"] - mine["quantity"]).sort_values(["_c", "seq"],
                                                                                    ascending=[False, True])
        cited = [e for pair in zip(mine["entry_id"], mine["corrected_by"]) for e in pair]
        reason = msg("%(user)s at %(facility)s had %(marked)s of %(all)s corrected afterwards by an adjustment, where "
                     "colleagues' rate predicts %(expected)s (chance %(chance)s).", user=code(row.recorded_by),
                     facility=code(row.facility_code),
                     marked=nmsg("%(n)s dispensing", "%(n)s dispensings", n=count(row.marked)), all=count(row.n),
                     expected=num(row.expected, 1), chance=sci(row.chance))
        hits.append(peers.user_hit(NAME, row, cited, reason, n_tested, dispensings=int(row.n)))
    return hits
