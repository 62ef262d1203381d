"""Reading stock: on hand and its filters, stock cards, expiries, consumption and stockouts."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event

from stock.errors import UnknownFacility, UnknownItem
from stock.ledger import post, reverse
from stock.masterdata import add_facility
from stock.queries import expiring, on_hand, patient_dispensings, stock_card, stock_positions, stockouts
from stock.transfers import match_transfers
from tests.stock.builders import build_world, entry

TODAY = date(2026, 4, 15)


def at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=timezone.utc)


@pytest.fixture
def world(session):
    s = session
    build_world(s)
    add_facility(s, "B1", "Benghazi Medical Centre", "Benghazi", "hospital")
    dec = at(2025, 12, 10)
    post(s, [
        entry("receipt", 200, lot="L1", at=dec),
        entry("receipt", 50, lot="L-SOON", expiry_date=date(2026, 6, 30), at=dec),
        entry("receipt", 10, lot="L-OLD", expiry_date=date(2026, 3, 31), at=dec),
        entry("receipt", 5, lot="L-GONE", expiry_date=date(2026, 4, 30), at=dec),
        entry("dispense", 15, lot="L1", at=at(2025, 12, 20)),      # before the window
        entry("dispense", 30, lot="L1", at=at(2026, 1, 15)),
        entry("dispense", 30, lot="L1", at=at(2026, 2, 15)),
        entry("dispense", 12, lot="L1", at=at(2026, 2, 20), entry_id="D-REV"),
        entry("loss", 5, lot="L-GONE", at=at(2026, 2, 25)),        # a loss is not consumption
        entry("dispense", 60, lot="L1", at=at(2026, 3, 15)),
        entry("dispense", 9, lot="L1", at=at(2026, 4, 5)),         # current month: not full yet
        entry("receipt", 10, item="GLOVE", lot="", expiry_date=None, at=dec),
        entry("dispense", 10, item="GLOVE", lot="", at=at(2026, 2, 1)),
        entry("receipt", "20.5", facility="HC2", item="INSG", lot="I1", expiry_date=date(2026, 5, 1),
              at=dec),
        entry("receipt", 20, facility="B1", lot="L1", at=dec),
        entry("receipt", 1000, facility="WH-C", lot="L1", at=dec),
    ])
    reverse(s, "D-REV", reason="wrong patient", by="u2", now=at(2026, 2, 21), new_id="REV-1")
    s.commit()
    return s


def rows(result) -> list[tuple]:
    return [(r.facility_code, r.item_code, r.lot_number, r.on_hand) for r in result]


def test_on_hand_skips_empty_lots_unless_asked(world):
    got = rows(on_hand(world))
    assert got == [
        ("B1", "MOR10", "L1", 20),
        ("H1", "MOR10", "L-OLD", 10),   # by expiry within an item
        ("H1", "MOR10", "L-SOON", 50),
        ("H1", "MOR10", "L1", 56),
        ("HC2", "INSG", "I1", Decimal("20.5")),
        ("WH-C", "MOR10", "L1", 1000),
    ]
    with_zero = rows(on_hand(world, facility_code="H1", include_zero=True))
    assert ("H1", "GLOVE", "", 0) in with_zero and ("H1", "MOR10", "L-GONE", 0) in with_zero
    assert len(with_zero) == 5


def test_on_hand_filters(world):
    assert rows(on_hand(world, facility_code="HC2")) == [("HC2", "INSG", "I1", Decimal("20.5"))]
    assert {r[0] for r in rows(on_hand(world, item_code="MOR10"))} == {"B1", "H1", "WH-C"}
    assert rows(on_hand(world, region="Benghazi")) == [("B1", "MOR10", "L1", 20)]
    assert rows(on_hand(world, facility_code="H1", item_code="INSG")) == []
    one = on_hand(world, facility_code="HC2")[0]
    assert (one.item_name, one.unit, one.expiry_date) == ("Insulin glargine 100 IU/ml", "ml", date(2026, 5, 1))
    with pytest.raises(UnknownFacility):
        on_hand(world, facility_code="NOPE")
    with pytest.raises(UnknownItem):
        on_hand(world, item_code="NOPE")


def test_stock_card_running_balance(world):
    card = stock_card(world, "H1", "MOR10")
    assert card.opening == 0
    kinds = [line.kind for line in card.lines]
    assert kinds == ["receipt"] * 4 + ["dispense"] * 4 + ["loss", "dispense", "dispense", "adjustment"]
    running = Decimal(0)
    for line in card.lines:
        running += line.effect
        assert line.balance == running
    assert card.closing == 116 == sum(r.on_hand for r in on_hand(world, facility_code="H1", item_code="MOR10"))
    rev = card.lines[-1]
    assert (rev.entry_id, rev.reverses, rev.effect, rev.recorded_by) == ("REV-1", "D-REV", 12, "u2")
    assert card.lines[4].health_card_id == "LY0000000001"
    assert card.lines[0].health_card_id is None


def test_stock_card_opening_balance_since_and_until(world):
    card = stock_card(world, "H1", "MOR10", since=at(2026, 1, 1, 0))
    assert card.opening == 200 + 50 + 10 + 5 - 15
    assert [line.occurred_at.date() for line in card.lines][:2] == [date(2026, 1, 15), date(2026, 2, 15)]
    assert card.lines[0].balance == card.opening - 30
    assert card.closing == 116
    window = stock_card(world, "H1", "MOR10", since=at(2026, 2, 1, 0), until=at(2026, 3, 1, 0))
    assert window.opening == 220
    # in the order applied: the reversal (dated the 21st) was posted after the loss of the 25th
    assert [line.entry_id for line in window.lines][-1] == "REV-1"
    assert len(window.lines) == 4
    assert window.closing == 220 - 30 - 12 - 5 + 12
    empty = stock_card(world, "HC2", "MOR10", since=at(2026, 1, 1, 0))
    assert (empty.opening, empty.lines, empty.closing) == (0, [], 0)


def test_expiring_includes_expired_and_excludes_far_and_empty(world):
    got = [(r.facility_code, r.lot_number, r.expiry_date) for r in expiring(world, within_days=90, today=TODAY)]
    assert got == [
        ("H1", "L-OLD", date(2026, 3, 31)),
        ("HC2", "I1", date(2026, 5, 1)),
        ("H1", "L-SOON", date(2026, 6, 30)),
    ]  # L-GONE expires in the window but is out of stock; L1 expires in 2028
    assert [r.lot_number for r in expiring(world, within_days=0, today=TODAY)] == ["L-OLD"]
    limit = (date(2026, 6, 30) - TODAY).days
    assert "L-SOON" in [r.lot_number for r in expiring(world, within_days=limit, today=TODAY)]
    assert "L-SOON" not in [r.lot_number for r in expiring(world, within_days=limit - 1, today=TODAY)]
    assert [r.lot_number for r in expiring(world, within_days=90, today=TODAY, facility_code="HC2")] == ["I1"]


def test_stock_positions_amc_over_full_months(world):
    pos = {(p.facility_code, p.item_code): p for p in stock_positions(world, today=TODAY, months=3)}
    mor = pos[("H1", "MOR10")]
    # January to March: 30 + 30 + 60; December and April outside, the reversed 12 not consumption
    assert (mor.on_hand, mor.amc, mor.months_of_stock) == (116, 40, Decimal("2.9"))
    assert str(mor.amc) == "40" and str(mor.on_hand) == "116"
    glove = pos[("H1", "GLOVE")]
    assert (glove.on_hand, glove.amc, glove.months_of_stock) == (0, Decimal("3.333"), Decimal("0.0"))
    assert glove.stocked_out
    insulin = pos[("HC2", "INSG")]
    assert (insulin.on_hand, insulin.amc, insulin.months_of_stock) == (Decimal("20.5"), 0, None)
    assert set(pos) == {("B1", "MOR10"), ("H1", "GLOVE"), ("H1", "MOR10"), ("HC2", "INSG"), ("WH-C", "MOR10")}


def test_stock_positions_window_and_facility(world):
    [march] = [p for p in stock_positions(world, today=TODAY, months=1, facility_code="H1")
               if p.item_code == "MOR10"]
    assert (march.amc, march.months_of_stock) == (60, Decimal("1.9"))
    assert [p.facility_code for p in stock_positions(world, today=TODAY, facility_code="HC2")] == ["HC2"]
    # Seen from May, the window is February to April: 30 (+12 reversed) + 60 + 9
    [may] = [p for p in stock_positions(world, today=date(2026, 5, 2), facility_code="H1")
             if p.item_code == "MOR10"]
    assert may.amc == 33


def test_stockouts(world):
    assert [(p.facility_code, p.item_code) for p in stockouts(world, today=TODAY)] == [("H1", "GLOVE")]
    assert stockouts(world, today=TODAY, facility_code="HC2") == []


# Transfers: pairing the two legs (stock.transfers) is a read over the ledger like those above.

@pytest.fixture
def transfers(session):
    s = session
    build_world(s)
    add_facility(s, "B1", "Benghazi Medical Centre", "Benghazi", "hospital")

    def day(n: int) -> datetime:
        return at(2026, 3, n)

    post(s, [
        entry("receipt", 1000, facility="WH-C", lot="L1", at=day(1)),
        # WB-1: matched by its document although the arrival was keyed with an earlier time
        entry("transfer_out", 100, facility="WH-C", lot="L1", counterparty_code="H1",
              document_number="WB-1", entry_id="O-DOC", at=day(5)),
        entry("transfer_in", 100, facility="H1", lot="L1", counterparty_code="WH-C",
              document_number="WB-1", entry_id="I-DOC", at=day(4)),
        # No documents: paired by route to the earliest exact arrival after departure
        entry("transfer_out", 50, facility="WH-C", lot="L1", counterparty_code="HC2",
              entry_id="O-ROUTE", at=day(6)),
        entry("transfer_in", 50, facility="HC2", lot="L1", counterparty_code="WH-C",
              entry_id="I-EARLY", at=day(5)),   # before departure: not this one
        entry("transfer_in", 45, facility="HC2", lot="L1", counterparty_code="WH-C",
              entry_id="I-SHORT", at=day(7)),
        entry("transfer_in", 50, facility="HC2", lot="L1", counterparty_code="WH-C",
              entry_id="I-EXACT", at=day(8)),
        # Arrived short, by document
        entry("transfer_out", 30, facility="WH-C", lot="L1", counterparty_code="B1",
              document_number="WB-2", entry_id="O-SHORT", at=day(9)),
        entry("transfer_in", 27, facility="B1", lot="L1", counterparty_code="WH-C",
              document_number="WB-2", entry_id="I-27", at=day(11)),
        # Never arrived
        entry("transfer_out", 20, facility="WH-C", lot="L1", counterparty_code="B1",
              document_number="WB-3", entry_id="O-LOST", at=day(12)),
        # Keyed by mistake and corrected: nothing moved, nothing to find
        entry("transfer_out", 40, facility="WH-C", lot="L1", counterparty_code="H1",
              entry_id="O-MISTAKE", at=day(13)),
    ])
    reverse(s, "O-MISTAKE", reason="keyed twice", by="u2", now=at(2026, 3, 13, 12))
    s.commit()
    return s


def test_transfer_legs_paired_by_document_then_route(transfers):
    m = match_transfers(transfers)
    pairs = {p.out.entry_id: p.into.entry_id for p in m.matched}
    assert pairs == {"O-DOC": "I-DOC", "O-ROUTE": "I-EXACT", "O-SHORT": "I-27"}
    short = next(p for p in m.matched if p.out.entry_id == "O-SHORT")
    assert (short.document_number, short.quantity_out, short.quantity_in, short.shortfall) == (
        "WB-2", 30, 27, 3)
    assert [leg.entry_id for leg in m.unmatched_out] == ["O-LOST"]
    assert [leg.entry_id for leg in m.unmatched_in] == ["I-EARLY", "I-SHORT"]


def test_reversed_transfer_leg_is_not_reported_unmatched(transfers):
    m = match_transfers(transfers)
    assert "O-MISTAKE" not in [leg.entry_id for leg in m.unmatched_out]
    assert "O-MISTAKE" not in [p.out.entry_id for p in m.matched]


def test_patient_dispensings_across_facilities_with_reversals(world):
    s = world
    post(s, entry("dispense", 3, facility="B1", lot="L1", at=at(2026, 3, 20), entry_id="D-B1"))
    s.commit()
    got = patient_dispensings(s, "LY0000000001")
    by_id = {d.entry_id: d for d in got}
    assert by_id["D-B1"].facility_code == "B1" and {d.facility_code for d in got} == {"H1", "B1"}
    assert by_id["D-REV"].reversed_by == "REV-1" and by_id["D-B1"].reversed_by is None
    assert len(got) == 8 and [d.occurred_at for d in got] == sorted((d.occurred_at for d in got), reverse=True)
    assert patient_dispensings(s, "LY0000000002") == []


def test_lookups_by_patient_prescription_and_document_use_their_indexes(world):
    """The lookup indexes on patient_id, prescription_ref, document_number and reverses leave out
    entries without a value; the queries must still reach them instead of reading the ledger."""
    s = world
    if s.get_bind().dialect.name != "sqlite":
        pytest.skip("query plans are checked on SQLite, whose planner does not weigh table sizes")
    statements = []
    event.listen(s.get_bind(), "before_cursor_execute",
                 lambda conn, cur, stmt, params, ctx, many: statements.append((stmt, params)))
    patient_dispensings(s, "LY0000000001")
    stmt, params = statements[-1]
    checks = [(stmt, params),
              ("SELECT count(*) FROM ledger_entry WHERE prescription_ref = ? AND kind = 'dispense'", ("RX1",)),
              ("SELECT a.entry_id FROM ledger_entry a JOIN ledger_entry b ON b.document_number = a.document_number "
               "WHERE a.facility_id = ?", (1,))]
    for sql, args in checks:
        plan = " | ".join(r[3] for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, args))
        assert "SCAN ledger_entry" not in plan and "SCAN b" not in plan, plan
    plan = " | ".join(r[3] for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params))
    for index in ("ix_ledger_entry_patient_id", "uq_ledger_entry_reverses"):
        assert index in plan, plan
