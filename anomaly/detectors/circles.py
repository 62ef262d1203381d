"""A user giving controlled items without prescription, again and again, to the same few patients.

An emergency dose without a prescription happens (a patient in pain at night, a prescription that
follows), and each goes to whoever needed it. Diversion through real patients looks different:
one user, a small circle of patients, each served again without a prescription. A controlled
dispensing without prescription is marked when the user gave the same patient another one; the
user's marked dispensings are set against colleagues' rate at facilities of the same kind
(anomaly.peers).
"""

from __future__ import annotations

from anomaly import peers
from anomaly.features import Frames
from anomaly.hits import Hit
from anomaly.wording import times
from stock.messages import code, count, join, msg, nmsg, num, sci

NAME = "circles"


population = peers.population


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["controlled"] & (d["recorded_by"] != "")]
    if d.empty:
        return []
    none = (d["prescription_id"] == "") & (d["health_card_id"] != "")
    pair = d[none].groupby(peers.USER + ["health_card_id"])["entry_id"].transform("size")
    mark = none & (pair.reindex(d.index).fillna(0) >= 2)
    u = peers.assess(d, mark, ["facility_kind"])
    n_tested = peers.tested(u)
    hits = []
    for row, mine in peers.reported(u, d[mark.to_numpy()]):
        per_patient = mine.groupby("health_card_id").size().sort_values(ascending=False)
        mine = mine.assign(_n=mine["health_card_id"].map(per_patient)).sort_values(["_n", "seq"], ascending=[False, True])
        items = join(sorted(set(mine["item_name"])), ",")
        reason = msg("%(user)s at %(facility)s gave controlled items without prescription %(times)s to %(patients)s "
                     "served so more than once (%(items)s), where colleagues at facilities of the same kind predict "
                     "%(expected)s (chance %(chance)s).", user=code(row.recorded_by), facility=code(row.facility_code),
                     times=times(int(row.marked)),
                     patients=nmsg("%(n)s patient", "%(n)s patients", n=count(len(per_patient))), items=items,
                     expected=num(row.expected, 1), chance=sci(row.chance))
        hits.append(peers.user_hit(NAME, row, mine["entry_id"], reason, n_tested, patients=int(len(per_patient))))
    return hits
