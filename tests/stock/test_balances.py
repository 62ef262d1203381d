"""Balances are a cache of the ledger: drift written behind its back is found, named and repaired."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from stock import balances
from stock.ledger import post
from stock.models import Balance, Facility, Lot
from tests.stock.builders import T0, build_world, entry


@pytest.fixture
def world(session):
    build_world(session)
    post(session, [
        entry("receipt", 100, facility="H1", lot="L1"),
        entry("dispense", 30, facility="H1", lot="L1"),
        entry("receipt", 40, facility="H1", lot="L2"),
        entry("receipt", "20.5", facility="HC2", item="INSG", lot="I1"),
        entry("dispense", "0.25", facility="HC2", item="INSG", lot="I1"),
        entry("receipt", 500, facility="WH-C", lot="L1"),
        entry("transfer_out", 50, facility="WH-C", lot="L1", counterparty_code="HC2"),
        entry("transfer_in", 50, facility="HC2", lot="L1", counterparty_code="WH-C",
              at=T0 + timedelta(days=1)),
        entry("count", 48, facility="HC2", lot="L1", at=T0 + timedelta(days=2)),
        entry("receipt", 10, facility="H1", item="GLOVE", lot="", expiry_date=None),
        entry("dispense", 10, facility="H1", item="GLOVE", lot=""),
    ])
    session.commit()
    return session


def ids(session, facility: str, lot: str) -> tuple[int, int]:
    fid = session.scalar(select(Facility.id).where(Facility.code == facility))
    lid = session.scalar(select(Lot.id).where(Lot.lot_number == lot))
    return fid, lid


def corrupt(session, sql: str, facility: str, lot: str) -> None:
    """Write to the balance table behind the write path's back (quantities are thousandths)."""
    fid, lid = ids(session, facility, lot)
    session.execute(text(sql), {"f": fid, "l": lid})
    session.commit()


def test_clean_ledger_has_no_drift(world):
    assert balances.drift(world) == []


def test_corrupted_balance_named_with_both_numbers(world):
    s = world
    corrupt(s, "UPDATE balance SET on_hand = 77000 WHERE facility_id = :f AND lot_id = :l", "H1", "L1")
    [d] = balances.drift(s)
    assert (d.facility_code, d.item_code, d.lot_number) == ("H1", "MOR10", "L1")
    assert (d.ledger, d.balance) == (Decimal(70), Decimal(77))
    assert str(d) == "H1 MOR10 lot L1: ledger says 70, balance says 77 (drift 7)"
    balances.repair(s, [d])
    s.commit()
    assert balances.drift(s) == []
    assert s.get(Balance, ids(s, "H1", "L1")).on_hand == 70


def test_fractional_drift_is_exact(world):
    s = world
    corrupt(s, "UPDATE balance SET on_hand = on_hand - 1 WHERE facility_id = :f AND lot_id = :l",
            "HC2", "I1")
    [d] = balances.drift(s)
    assert (d.ledger, d.balance) == (Decimal("20.25"), Decimal("20.249"))
    assert "drift -0.001" in str(d)


def test_deleted_balance_row_reported_and_recreated(world):
    s = world
    corrupt(s, "DELETE FROM balance WHERE facility_id = :f AND lot_id = :l", "WH-C", "L1")
    [d] = balances.drift(s)
    assert (d.facility_code, d.item_code, d.lot_number, d.ledger, d.balance) == (
        "WH-C", "MOR10", "L1", Decimal(450), Decimal(0))
    balances.repair(s, [d])
    s.commit()
    assert balances.drift(s) == []
    row = s.get(Balance, ids(s, "WH-C", "L1"))
    assert row.on_hand == 450 and row.item_id == d.item_id


def test_deleted_balance_of_empty_lot_is_no_drift(world):
    """A lot dispensed to zero has nothing to drift from when its row goes."""
    s = world
    corrupt(s, "DELETE FROM balance WHERE facility_id = :f AND lot_id = :l", "H1", "")
    assert balances.drift(s) == []


def test_balance_without_any_ledger_entry_reported(world):
    s = world
    fid, lid = ids(s, "H1", "I1")  # INSG lot I1 only ever moved at HC2
    s.execute(text("INSERT INTO balance (facility_id, lot_id, item_id, on_hand) "
                   "SELECT :f, :l, item_id, 5000 FROM lot WHERE id = :l"), {"f": fid, "l": lid})
    s.commit()
    [d] = balances.drift(s)
    assert (d.facility_code, d.item_code, d.lot_number, d.ledger, d.balance) == (
        "H1", "INSG", "I1", Decimal(0), Decimal(5))
    balances.repair(s, [d])
    s.commit()
    assert balances.drift(s) == []


def test_several_drifts_in_order_and_repair_fixes_all(world):
    s = world
    corrupt(s, "UPDATE balance SET on_hand = 0 WHERE facility_id = :f AND lot_id = :l", "WH-C", "L1")
    corrupt(s, "UPDATE balance SET on_hand = on_hand + 2000 WHERE facility_id = :f AND lot_id = :l",
            "HC2", "L1")
    corrupt(s, "UPDATE balance SET on_hand = 1000 WHERE facility_id = :f AND lot_id = :l", "H1", "L2")
    drifts = balances.drift(s)
    assert [(d.facility_code, d.lot_number, d.ledger, d.balance) for d in drifts] == [
        ("H1", "L2", 40, 1), ("HC2", "L1", 48, 50), ("WH-C", "L1", 450, 0)]
    balances.repair(s, drifts)
    s.commit()
    assert balances.drift(s) == []
    # Repair touched only what drifted: the rest still equals what post() wrote.
    assert s.get(Balance, ids(s, "H1", "L1")).on_hand == 70
