"""Monthly dispensing per item at a facility (the manager's consumption chart), net of reversals."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from stock.errors import UnknownFacility
from stock.ledger import post, reverse
from stock.queries import monthly_dispensed, stock_positions
from tests.stock.builders import build_world, entry

TODAY = date(2026, 4, 15)


def at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=timezone.utc)


@pytest.fixture
def world(session):
    build_world(session)
    post(session, [
        entry("receipt", 500, lot="L1", at=at(2025, 10, 1)),
        entry("receipt", 50, item="GLOVE", lot="", expiry_date=None, at=at(2025, 10, 1)),
        entry("dispense", 7, lot="L1", at=at(2025, 12, 31, 23)),     # before a 4-month window
        entry("dispense", 30, lot="L1", at=at(2026, 1, 1, 0)),        # first instant of January
        entry("dispense", 12, lot="L1", at=at(2026, 1, 20)),
        entry("dispense", 40, lot="L1", at=at(2026, 3, 31, 23)),
        entry("dispense", 11, lot="L1", at=at(2026, 3, 5), entry_id="D-REV"),
        entry("dispense", 9, lot="L1", at=at(2026, 4, 2)),            # the current month counts
        entry("loss", 5, lot="L1", at=at(2026, 2, 10)),               # a loss is not consumption
        entry("dispense", 3, item="GLOVE", lot="", at=at(2026, 2, 1)),
        entry("dispense", 4, facility="H1", item="GLOVE", lot="", at=at(2026, 2, 2)),
    ])
    reverse(session, "D-REV", reason="wrong patient", by="u2", now=at(2026, 3, 6), new_id="REV-1")
    session.commit()
    return session


def test_months_items_and_reversals(world):
    got = [(u.item_code, u.month, u.dispensed) for u in monthly_dispensed(world, "H1", today=TODAY, months=4)]
    assert got == [
        ("GLOVE", date(2026, 1, 1), Decimal(0)), ("GLOVE", date(2026, 2, 1), Decimal(7)),
        ("GLOVE", date(2026, 3, 1), Decimal(0)), ("GLOVE", date(2026, 4, 1), Decimal(0)),
        ("MOR10", date(2026, 1, 1), Decimal(42)), ("MOR10", date(2026, 2, 1), Decimal(0)),
        ("MOR10", date(2026, 3, 1), Decimal(40)), ("MOR10", date(2026, 4, 1), Decimal(9)),
    ]


def test_one_item_and_one_month(world):
    got = monthly_dispensed(world, "H1", today=TODAY, months=1, item_code="MOR10")
    assert [(u.month, u.dispensed) for u in got] == [(date(2026, 4, 1), Decimal(9))]
    assert monthly_dispensed(world, "HC2", today=TODAY) == []


def test_agrees_with_the_average_monthly_consumption(world):
    """The three full months before this one average to stock_positions' AMC."""
    months = monthly_dispensed(world, "H1", today=TODAY, months=4, item_code="MOR10")[:3]
    amc = sum(u.dispensed for u in months) / 3
    pos = {p.item_code: p for p in stock_positions(world, today=TODAY, facility_code="H1")}
    assert pos["MOR10"].amc == amc.quantize(Decimal("0.001")).normalize()


def test_errors(world):
    with pytest.raises(UnknownFacility):
        monthly_dispensed(world, "NOPE", today=TODAY)
    with pytest.raises(ValueError):
        monthly_dispensed(world, "H1", today=TODAY, months=0)
