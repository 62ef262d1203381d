"""Builders for ledger tests: a small world and entries with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from stock.ledger import NewEntry
from stock.masterdata import add_facility, add_item, add_patient, add_prescription

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
_ids = itertools.count(1)


def build_world(session) -> None:
    add_facility(session, "WH-C", "Central Medical Store", "Tripoli", "warehouse")
    add_facility(session, "H1", "Tripoli Central Hospital", "Tripoli", "hospital", parent_code="WH-C")
    add_facility(session, "HC2", "Souq Al Juma Health Centre", "Tripoli", "health_center", parent_code="WH-C")
    add_item(session, "MOR10", "Morphine 10 mg tablet", "tablet", controlled=True, atc_code="N02AA01",
             max_dispense_quantity=60)
    add_item(session, "INSG", "Insulin glargine 100 IU/ml", "ml", atc_code="A10AE04")
    add_item(session, "GLOVE", "Surgical gloves, pair", "piece")
    add_patient(session, "LY0000000001", 1970, "F", "H1")
    add_patient(session, "LY0000000002", 1950, "M", "H1", deceased_on=date(2026, 2, 1))
    add_prescription(session, "RX1", "LY0000000001", "H1", "MOR10", 30, 30, date(2026, 3, 1))
    session.commit()


def entry(kind: str, quantity, *, facility: str = "H1", item: str = "MOR10", lot: str = "L1",
          at: datetime | None = None, **kw) -> NewEntry:
    defaults = dict(recorded_by="u1")
    if kind == "dispense":
        defaults["health_card_id"] = "LY0000000001"
    if kind in ("loss", "adjustment"):
        defaults["reason"] = "damaged" if kind == "loss" else "correction"
    if kind in ("receipt", "transfer_in"):
        defaults["expiry_date"] = date(2028, 1, 31)
    defaults.update(kw)
    return NewEntry(
        entry_id=defaults.pop("entry_id", f"e{next(_ids):06d}"), kind=kind, facility_code=facility,
        item_code=item, lot_number=lot, quantity=Decimal(str(quantity)), occurred_at=at or T0,
        **defaults,
    )
