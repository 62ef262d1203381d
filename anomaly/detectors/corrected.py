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
from anomaly.hits import Hit, plural

NAME = "corrected"
EVIDENCE_CAP = 8


def population(frames: Frames) -> int:
    return int(len(frames.dispenses[peers.USER].drop_duplicates()))


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["recorded_by"] != ""]
    mark = d["corrected_by"] != ""
    if not mark.any():
        return []
    u = peers.assess(d, mark, ["facility_code"], wider=["facility_kind"])
    n_tested = peers.tested(u)
    marked = d[mark.to_numpy()]
    hits = []
    for row in peers.tail(u).itertuples():
        mine = marked[(marked["facility_code"] == row.facility_code) & (marked["recorded_by"] == row.recorded_by)]
        mine = mine.assign(_c=mine["keyed_quantity"] - mine["quantity"]).sort_values(["_c", "seq"],
                                                                                    ascending=[False, True])
        cited = []
        for eid, fix in zip(mine["entry_id"], mine["corrected_by"]):
            cited += [eid, fix]
        reason = (f"{row.recorded_by} at {row.facility_code} had {plural(int(row.marked), 'dispensing')} of "
                  f"{int(row.n)} corrected afterwards by an adjustment, where colleagues' rate predicts "
                  f"{row.expected:.1f} (chance {row.chance:.1e}).")
        hits.append(Hit(NAME, "user", row.recorded_by, row.facility_code, tuple(cited[:EVIDENCE_CAP]),
                        float(1 - row.chance), reason,
                        {"p": float(row.chance), "tests": n_tested, "marked": int(row.marked),
                         "dispensings": int(row.n), "expected": round(float(row.expected), 3)}))
    return hits
