"""Controlled items dispensed with no prescription, or against one that is on no record.

Supplies and common medicines are often given without a prescription; narcotics, psychotropics
and high-value medicines never should be.
"""

from __future__ import annotations

from anomaly.detectors.prescriptions import _when
from anomaly.features import Frames
from anomaly.hits import Hit, amount

NAME = "no_prescription"


def population(frames: Frames) -> int:
    """Controlled dispensings: what this rule looks at."""
    return int(frames.dispenses["controlled"].sum())


def detect(frames: Frames) -> list[Hit]:
    d = frames.dispenses
    d = d[d["controlled"]]
    known = set(frames.prescriptions["prescription_id"])
    missing = d[d["prescription_id"] == ""]
    unknown = d[(d["prescription_id"] != "") & ~d["prescription_id"].isin(known)]
    hits = []
    for row in missing.itertuples():
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), 0.75,
                        f"Controlled item {row.item_name}: {amount(row.quantity, row.unit)} dispensed without a "
                        f"prescription to {row.health_card_id}, by user {row.recorded_by} at {row.facility_code} "
                        f"{_when(row)}.", {"dispensed": row.quantity}))
    for row in unknown.itertuples():
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), 0.8,
                        f"Controlled item {row.item_name}: {amount(row.quantity, row.unit)} dispensed to "
                        f"{row.health_card_id} against prescription {row.prescription_id}, which is on no record, "
                        f"by user {row.recorded_by} at {row.facility_code} {_when(row)}.",
                        {"dispensed": row.quantity, "prescription": row.prescription_id}))
    return hits
