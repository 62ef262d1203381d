"""DHIS2 monthly figures over a generated ledger, month after month, against plain arithmetic.

The export takes a month's opening balance from whichever side of the month holds fewer entries
(the sum before it, or the balance table less what moved since) and places each movement in its
local day by comparing the stored time with the month's midnights. Here facilities in three zones
(daylight saving changes in March and April included), movements on both sides of local midnight,
stockouts and reversed dispensing are recorded month by month, and every month's figures must
equal those computed from the ledger's rows in Python, the obvious way. Both databases."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from stock.ledger import post, reverse
from stock.models import Facility, Item, LedgerEntry
from tests.stock.builders import build_world, entry
from web.interop.dhis2 import monthly_aggregates

ZONES = {"H1": "Europe/Paris", "HC2": "America/Santiago", "WH-C": None}   # None: the default zone
DEFAULT = ZoneInfo("Africa/Tripoli")
MONTHS = [(2026, m) for m in range(1, 6)]
ITEMS = ("INSG", "GLOVE")


def _zone(code: str) -> ZoneInfo:
    return ZoneInfo(ZONES[code]) if ZONES[code] else DEFAULT


def _record(session) -> None:
    """Receipts, dispensing (some emptying the shelf, some reversed) and losses, each month's
    recorded at that month's end, at times around local midnight as well as in the day."""
    rng = random.Random(19)
    on_hand = {(f, i): Decimal(0) for f in ZONES for i in ITEMS}
    n = 0
    for year, month in MONTHS[:4]:
        moves, to_reverse = [], []
        for day in range(1, 29, 3):
            for code in ZONES:
                tz = _zone(code)
                for item in ITEMS:
                    if (code, item) == ("HC2", "GLOVE") and month < 3:
                        continue                     # first held in March: no stockout days before
                    hour, minute = rng.choice([(0, 10), (23, 50), (9, 0), (13, 30)])
                    at = datetime(year, month, day, hour, minute, tzinfo=tz)
                    key = (code, item)
                    if on_hand[key] == 0 or rng.random() < 0.3:
                        q = Decimal(rng.randint(1, 40))
                        moves.append(entry("receipt", q, facility=code, item=item, lot="", at=at,
                                           entry_id=f"m{n}"))
                        on_hand[key] += q
                    else:
                        q = on_hand[key] if rng.random() < 0.3 else Decimal(rng.randint(1, int(on_hand[key])))
                        kind = "loss" if rng.random() < 0.15 else "dispense"
                        moves.append(entry(kind, q, facility=code, item=item, lot="", at=at, entry_id=f"m{n}"))
                        on_hand[key] -= q
                        if kind == "dispense" and rng.random() < 0.1:
                            to_reverse.append(f"m{n}")
                    n += 1
        recorded = datetime(year, month + 1, 1, 12, tzinfo=timezone.utc)
        post(session, moves, now=recorded)
        for eid in to_reverse:
            reverse(session, eid, reason="recorded in error", by="u2", now=recorded, new_id=f"r-{eid}")
    session.commit()


def _expected(session, year: int, month: int, now: datetime) -> dict:
    """(facility, item) -> (stock on hand at month end, consumption, stockout days), from the rows."""
    rows = session.execute(
        select(Facility.code, Item.code, LedgerEntry.occurred_at, LedgerEntry.kind, LedgerEntry.quantity,
               LedgerEntry.effect, LedgerEntry.entry_id)
        .join(Facility, Facility.id == LedgerEntry.facility_id).join(Item, Item.id == LedgerEntry.item_id)).all()
    reversed_ids = set(session.scalars(select(LedgerEntry.reverses).where(LedgerEntry.reverses.is_not(None))))
    out = {}
    for code in ZONES:
        tz = _zone(code)
        start = datetime(year, month, 1, tzinfo=tz)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
        for item in ITEMS:
            mine = [r for r in rows if r[0] == code and r[1] == item]
            if not any(at < end for _f, _i, at, *_ in mine):
                continue
            first = min(at for _f, _i, at, *_ in mine).astimezone(tz).date()
            on_hand = sum((eff for _f, _i, at, _k, _q, eff, _e in mine if at < end), Decimal(0))
            used = sum((q for _f, _i, at, k, q, _eff, e in mine
                        if k == "dispense" and start <= at < end and e not in reversed_ids), Decimal(0))
            out_days = 0
            day = date(year, month, 1)
            while day < end.astimezone(tz).date():
                day_end = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)
                balance = sum((eff for _f, _i, at, _k, _q, eff, _e in mine if at < day_end), Decimal(0))
                if day_end <= now and day >= first and balance <= 0:
                    out_days += 1
                day += timedelta(days=1)
            out[(code, item)] = (on_hand, used, out_days)
    return out


def test_every_month_equals_plain_arithmetic(session):
    build_world(session)
    for code, zone in ZONES.items():
        session.execute(update(Facility).where(Facility.code == code).values(timezone=zone))
    _record(session)
    sides, seen = set(), set()
    for year, month in MONTHS:
        start = datetime(year, month, 1, tzinfo=DEFAULT)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=DEFAULT)
        earlier = session.scalar(select(func.count()).where(LedgerEntry.recorded_at < start))
        later = session.scalar(select(func.count()).where(LedgerEntry.recorded_at >= end))
        sides.add(earlier <= later)
        for now in (datetime(2026, 3, 15, 12, tzinfo=timezone.utc), datetime(2026, 7, 1, tzinfo=timezone.utc)):
            got = {(a.facility_code, a.item_code): (a.stock_on_hand, a.consumption, a.stockout_days)
                   for a in monthly_aggregates(session, f"{year:04d}-{month:02d}", now=now,
                                                default_zone=DEFAULT.key)}
            assert got == _expected(session, year, month, now), (year, month, now)
            seen |= {("stockout" if v[2] else "none", "used" if v[1] else "unused") for v in got.values()}
            only = monthly_aggregates(session, f"{year:04d}-{month:02d}", now=now, facility_codes={"HC2"},
                                      default_zone=DEFAULT.key)
            assert {(a.facility_code, a.item_code) for a in only} == {k for k in got if k[0] == "HC2"}
    assert sides == {True, False}, "the months read their opening from both sides"
    assert {s for s, _u in seen} == {"stockout", "none"} and {u for _s, u in seen} == {"used", "unused"}
