"""A change of rule (an item's ceiling, its controlled flag) judges what is done after it, never
what was done before: master_data_change, written by the database's own trigger, says what was in
force when each movement happened (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from anomaly import scan
from anomaly.models import Flag
from stock.ledger import post
from stock.masterdata import add_prescription
from stock.models import Item
from tests.anomaly.helpers import at, stocked
from tests.stock.builders import entry


def _item(session, code: str) -> Item:
    return session.scalars(select(Item).where(Item.code == code)).one()


def _flagged(session, detector: str) -> set[str]:
    flags = session.scalars(select(Flag).where(Flag.detectors.contains(detector))).all()
    return {f.subject_id for f in flags if f.subject == "entry"}


def test_lowering_a_ceiling_does_not_flag_dispensings_made_under_the_old_one(session):
    stocked(session)
    add_prescription(session, "RX2", "LY0000000001", "H1", "MOR10", 500, 30, at(1).date())
    post(session, entry("dispense", 50, prescription_id="RX2", at=at(5), entry_id="within-60"))
    post(session, entry("dispense", 70, prescription_id="RX2", at=at(6), entry_id="over-60"))
    session.commit()

    _item(session, "MOR10").max_dispense_quantity = 40  # the protocol tightens today
    session.commit()
    now = datetime.now(timezone.utc)
    post(session, entry("dispense", 50, prescription_id="RX2", at=now, entry_id="over-40"),
         now=now + timedelta(seconds=1))
    session.commit()

    scan.run(session, now=now + timedelta(seconds=2), force=True)
    session.commit()
    flagged = _flagged(session, "prescriptions")
    # Over the ceiling of its day, and over today's: flagged; within 60 in March: left alone.
    assert {"over-60", "over-40"} <= flagged
    assert "within-60" not in flagged
    reasons = {f.subject_id: f.reason for f in session.scalars(select(Flag).where(Flag.subject == "entry"))}
    assert "protocol ceiling of 60" in reasons["over-60"]
    assert "protocol ceiling of 40" in reasons["over-40"]


def test_controlling_an_item_judges_only_dispensings_after_it(session):
    stocked(session, item="GLOVE", lot="G1")
    post(session, entry("dispense", 5, item="GLOVE", lot="G1", at=at(5), entry_id="gloves-before"))
    session.commit()
    _item(session, "GLOVE").controlled = True
    session.commit()
    now = datetime.now(timezone.utc)
    post(session, entry("dispense", 5, item="GLOVE", lot="G1", at=now, entry_id="gloves-after"),
         now=now + timedelta(seconds=1))
    session.commit()

    scan.run(session, now=now + timedelta(seconds=2), force=True)
    session.commit()
    flagged = _flagged(session, "no_prescription")
    assert "gloves-after" in flagged and "gloves-before" not in flagged


def test_a_ceiling_raised_then_lowered_judges_each_movement_by_its_own_day(session):
    stocked(session)
    add_prescription(session, "RX2", "LY0000000001", "H1", "MOR10", 500, 30, at(1).date())
    post(session, entry("dispense", 70, prescription_id="RX2", at=at(5), entry_id="march-70"))
    session.commit()
    item = _item(session, "MOR10")
    item.max_dispense_quantity = 100
    session.commit()
    item.max_dispense_quantity = 30
    session.commit()

    scan.run(session, now=datetime.now(timezone.utc), force=True)
    session.commit()
    # Both changes came after it: March's ceiling (60) is the one that applies.
    reasons = {f.subject_id: f.reason for f in session.scalars(select(Flag).where(Flag.subject == "entry"))}
    assert "protocol ceiling of 60" in reasons["march-70"]
