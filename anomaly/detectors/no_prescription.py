"""Controlled items dispensed with no prescription, or against one that is on no record.

Supplies and common medicines are often given without a prescription; narcotics, psychotropics
and high-value medicines never should be.
"""

from __future__ import annotations

from anomaly.detectors.prescriptions import _when
from anomaly.features import Frames
from anomaly.hits import Hit
from stock.messages import code, msg
from stock.messages import qty as quantity

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
                        msg("Controlled item %(item)s: %(qty)s dispensed without a prescription to %(card)s, "
                            "by user %(user)s at %(facility)s %(when)s.", item=code(row.item_name),
                            qty=quantity(row.quantity, row.unit), card=code(row.health_card_id),
                            user=code(row.recorded_by), facility=code(row.facility_code), when=_when(row)),
                        {"dispensed": row.quantity}))
    for row in unknown.itertuples():
        hits.append(Hit(NAME, "entry", row.entry_id, row.facility_code, (row.entry_id,), 0.8,
                        msg("Controlled item %(item)s: %(qty)s dispensed to %(card)s against prescription "
                            "%(rx)s, which is on no record, by user %(user)s at %(facility)s %(when)s.",
                            item=code(row.item_name), qty=quantity(row.quantity, row.unit),
                            card=code(row.health_card_id), rx=code(row.prescription_id),
                            user=code(row.recorded_by), facility=code(row.facility_code), when=_when(row)),
                        {"dispensed": row.quantity, "prescription": row.prescription_id}))
    return hits
