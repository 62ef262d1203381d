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
from anomaly.hits import Hit, plural

NAME = "circles"
EVIDENCE_CAP = 8


def population(frames: Frames) -> int:
    return int(len(frames.dispenses[peers.USER].drop_duplicates()))


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
    marked = d[mark.to_numpy()]
    hits = []
    for row in peers.tail(u).itertuples():
        mine = marked[(marked["facility_code"] == row.facility_code) & (marked["recorded_by"] == row.recorded_by)]
        per_patient = mine.groupby("health_card_id").size().sort_values(ascending=False)
        mine = mine.assign(_n=mine["health_card_id"].map(per_patient)).sort_values(["_n", "seq"], ascending=[False, True])
        items = ", ".join(sorted(set(mine["item_name"])))
        reason = (f"{row.recorded_by} at {row.facility_code} gave controlled items without prescription "
                  f"{plural(int(row.marked), 'time')} to {plural(len(per_patient), 'patient')} served so more than "
                  f"once ({items}), where colleagues at facilities of the same kind predict {row.expected:.1f} "
                  f"(chance {row.chance:.1e}).")
        hits.append(Hit(NAME, "user", row.recorded_by, row.facility_code, tuple(mine["entry_id"].head(EVIDENCE_CAP)),
                        float(1 - row.chance), reason,
                        {"p": float(row.chance), "tests": n_tested, "marked": int(row.marked),
                         "patients": int(len(per_patient)), "expected": round(float(row.expected), 3)}))
    return hits
