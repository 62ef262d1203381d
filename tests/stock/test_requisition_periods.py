"""A requisition's month is the facility's own: its time zone, else DAWA_DEFAULT_TIMEZONE. A
dispensing at 23:30 local on the last day of a month belongs to that month, wherever UTC puts it."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from stock.ledger import post
from stock.masterdata import add_facility, facility_by_code
from stock.requisitions.figures import period_bounds
from stock.requisitions.flow import lines
from stock.requisitions.prepare import prepare, prepare_all
from stock.settings import get_settings
from tests.stock.builders import build_world, entry

NOW = datetime(2026, 4, 5, 8, tzinfo=timezone.utc)


def local(zone: str, *args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def ledger(s, zone: str, facility: str) -> None:
    post(s, [
        entry("receipt", 100, facility=facility, at=local(zone, 2026, 2, 1, 9)),
        entry("dispense", 10, facility=facility, at=local(zone, 2026, 3, 15, 10)),
        entry("dispense", 7, facility=facility, at=local(zone, 2026, 3, 31, 23, 30)),  # late on the last day
        entry("dispense", 4, facility=facility, at=local(zone, 2026, 4, 1, 0, 30)),    # early on the next
    ])
    s.flush()


def march(s, facility: str):
    req = prepare(s, facility_by_code(s, facility), by="p", period="2026-03", now=NOW)
    (line,) = [v.line for v in lines(s, req) if v.item.code == "MOR10"]
    return line


@pytest.mark.parametrize("zone", ["Atlantic/Cape_Verde", "Africa/Tripoli"])  # behind and ahead of UTC
def test_a_facility_s_own_zone_bounds_its_months(session, zone):
    build_world(session)
    add_facility(session, "HCZ", "Zoned health centre", "Tripoli", "health_center", parent_code="WH-C",
                 timezone_name=zone)
    ledger(session, zone, "HCZ")
    line = march(session, "HCZ")
    assert (line.opening, line.dispensed, line.closing) == (100, 17, 83)


@pytest.fixture
def cape_verde_default(monkeypatch):
    monkeypatch.setenv("DAWA_DEFAULT_TIMEZONE", "Atlantic/Cape_Verde")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_facility_without_a_zone_counts_in_the_default_zone(session, cape_verde_default):
    build_world(session)  # H1 names no zone
    ledger(session, "Atlantic/Cape_Verde", "H1")
    assert march(session, "H1").dispensed == 17
    start, end = period_bounds("2026-03", ZoneInfo("Atlantic/Cape_Verde"))
    assert (start, end) == (datetime(2026, 3, 1, 1, tzinfo=timezone.utc), datetime(2026, 4, 1, 1, tzinfo=timezone.utc))


def test_a_store_prepares_for_facilities_in_different_zones_at_once(session):
    build_world(session)
    for code, zone in (("HCW", "Atlantic/Cape_Verde"), ("HCE", "Africa/Tripoli")):
        add_facility(session, code, f"Health centre {code}", "Tripoli", "health_center", parent_code="WH-C",
                     timezone_name=zone)
        ledger(session, zone, code)
    reqs = prepare_all(session, [facility_by_code(session, c) for c in ("HCW", "HCE")], by="store",
                       period="2026-03", now=NOW)
    for req in reqs:
        (line,) = [v.line for v in lines(session, req) if v.item.code == "MOR10"]
        assert (line.dispensed, line.closing) == (17, 83), req.number


def test_an_emergency_requisition_is_of_the_local_month(session):
    build_world(session)
    add_facility(session, "HCE", "Health centre east", "Tripoli", "health_center", parent_code="WH-C",
                 timezone_name="Africa/Tripoli")
    post(session, [entry("receipt", 5, facility="HCE", at=local("Africa/Tripoli", 2026, 2, 1, 9),
                         expiry_date=date(2028, 1, 31))])
    # 00:30 on April 1 in Tripoli is still March 31 in UTC.
    req = prepare(session, facility_by_code(session, "HCE"), by="p", emergency=True,
                  now=local("Africa/Tripoli", 2026, 4, 1, 0, 30))
    assert req.period == "2026-04" and req.number == "REQ-HCE-2026-04-E1"
