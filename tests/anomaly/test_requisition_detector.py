"""The requisition detector on a hand-built ledger (SQLite and PostgreSQL): one facility asks far
above its use, one orders in emergency three times in a week, one receives stock it never uses;
their peers, doing the ordinary thing, are not flagged."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from anomaly import features, scan
from anomaly.detectors.requisitions import detect
from anomaly.models import Flag
from stock.ledger import post
from stock.masterdata import add_facility, facility_by_code
from stock.requisitions import flow
from stock.requisitions.fulfil import fulfil, receive
from stock.requisitions.prepare import prepare
from tests.stock.builders import build_world, entry


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def cycle(s, code: str, *, change: int | None = None, receive_at: datetime | None = None):
    fac = facility_by_code(s, code)
    now = utc(2026, 4, 5)
    req = prepare(s, fac, by="p", period="2026-03", now=now)
    if change is not None:
        flow.change(s, req, [flow.Decision("MOR10", Decimal(change), "because")], by="p", now=now)
    flow.submit(s, req, by="p", now=now)
    if receive_at:
        flow.approve(s, req, [], by="store", now=receive_at)
        fulfil(s, req, by="store", now=receive_at)
        receive(s, req, [], by="p", now=receive_at)
    return req


def world(s) -> None:
    build_world(s)
    for code in ("HC3", "HC4"):
        add_facility(s, code, f"Health centre {code}", "Tripoli", "health_center", parent_code="WH-C")
    post(s, entry("receipt", 5000, facility="WH-C", lot="S1", expiry_date=date(2028, 1, 31), at=utc(2025, 12, 1)))
    for code in ("H1", "HC2", "HC3", "HC4"):
        post(s, [entry("receipt", 100, facility=code, at=utc(2026, 1, 1))]
             + [entry("dispense", 30, facility=code, at=utc(2026, m, 10)) for m in (1, 2, 3)])
    cycle(s, "H1", change=1000)                       # 920 beyond a suggestion of 80: 30 months of use
    cycle(s, "HC2", receive_at=utc(2026, 4, 6))       # received, then nothing dispensed
    cycle(s, "HC4", receive_at=utc(2026, 4, 6))       # received and used as before
    post(s, [entry("dispense", 30, facility="HC4", lot="S1", at=utc(2026, m, 1)) for m in (5, 6)])
    post(s, entry("dispense", 8, facility="HC3", at=utc(2026, 4, 2)))  # 2 left: emergency point
    hc3 = facility_by_code(s, "HC3")
    for day in (3, 4, 5):
        req = prepare(s, hc3, by="p", emergency=True, now=utc(2026, 4, day))
        flow.submit(s, req, by="p", now=utc(2026, 4, day))
    post(s, entry("dispense", 1, facility="H1", at=utc(2026, 6, 20)))  # the ledger runs to late June
    s.flush()


def test_requisition_detector_finds_each_scenario_and_spares_peers(session):
    world(session)
    frames = features.build(session)
    hits = detect(frames)
    found = sorted((h.case.split(":")[0], h.subject_id) for h in hits)
    assert found == [("emergencies", "HC3"), ("not-consumed", "HC2:MOR10"), ("over-request", "H1:MOR10")]
    over = next(h for h in hits if h.case.startswith("over-request"))
    assert "1,000 tablets" in over.reason and "justify 80" in over.reason and over.score > 0.8
    idle = next(h for h in hits if h.case.startswith("not-consumed"))
    assert idle.entry_ids and all(e.endswith("-in") for e in idle.entry_ids)
    assert "dispensed 0 in the 60 days" in idle.reason
    assert all(0 < h.score <= 1 for h in hits)
    frames.requisitions = None
    assert detect(frames) == []  # without the requisition frame there is nothing to read


def test_the_scan_runs_the_requisition_detector(session):
    world(session)
    scan.run(session)
    flagged = session.scalars(select(Flag).where(Flag.detectors.contains("requisitions"))).all()
    assert {f.subject_id for f in flagged} >= {"HC3", "H1:MOR10", "HC2:MOR10"}


def test_nothing_to_find_in_ordinary_replenishment(session):
    build_world(session)
    add_facility(session, "HC3", "Health centre 3", "Tripoli", "health_center", parent_code="WH-C")
    post(session, entry("receipt", 5000, facility="WH-C", lot="S1", expiry_date=date(2028, 1, 31), at=utc(2025, 12, 1)))
    for code in ("H1", "HC2", "HC3"):
        post(session, [entry("receipt", 100, facility=code, at=utc(2026, 1, 1))]
             + [entry("dispense", 30, facility=code, at=utc(2026, m, 10)) for m in (1, 2, 3)])
        cycle(session, code, change=90, receive_at=utc(2026, 4, 6))  # a little above the suggested 80
        post(session, [entry("dispense", 30, facility=code, lot="S1", at=utc(2026, 4, 6) + timedelta(days=d))
                       for d in (10, 40)])
    assert detect(features.build(session)) == []
