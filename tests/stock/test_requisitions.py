"""A month of replenishment through the domain, on SQLite and PostgreSQL: prepare from the ledger,
change with a reason, submit, approve with a cut, fulfil FEFO, receive short with damage, reconcile."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from stock.errors import InvalidEntry
from stock.ledger import post, reverse
from stock.models import Balance, LedgerEntry
from stock.requisitions import flow
from stock.requisitions.errors import InvalidLine, RequisitionExists, WrongState
from stock.requisitions.figures import facility_figures, period_bounds
from stock.requisitions.fulfil import Arrival, fulfil, receive, shipments
from stock.requisitions.levels import Levels, level_book, set_levels, status_of
from stock.requisitions.prepare import prepare
from stock.requisitions.reconcile import reconciliation
from stock.masterdata import facility_by_code, item_by_code
from tests.stock.builders import build_world, entry


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


NOW = utc(2026, 4, 5, 8)


def month_of_ledger(s) -> None:
    """H1 uses MOR10 (out of stock 10 days in March) and INSG; WH-C holds three lots of MOR10."""
    build_world(s)
    post(s, [
        entry("receipt", 80, facility="WH-C", lot="LB", expiry_date=date(2026, 9, 30), at=utc(2025, 12, 1)),
        entry("receipt", 50, facility="WH-C", lot="LA", expiry_date=date(2027, 1, 31), at=utc(2025, 12, 1)),
        entry("receipt", 30, facility="WH-C", lot="LX", expiry_date=date(2026, 4, 1), at=utc(2025, 12, 1)),
        entry("receipt", 100, at=utc(2026, 1, 1)),
        entry("dispense", 30, at=utc(2026, 1, 10)),
        entry("dispense", 30, at=utc(2026, 2, 10)),
        entry("dispense", 10, at=utc(2026, 2, 15), entry_id="wrong-dispense"),
    ])
    reverse(s, "wrong-dispense", reason="keyed twice", by="u1", now=utc(2026, 2, 16))
    post(s, [
        entry("dispense", 40, at=utc(2026, 3, 11)),
        entry("receipt", 60, at=utc(2026, 3, 21)),
        entry("dispense", 15, at=utc(2026, 3, 25)),
        entry("loss", 5, at=utc(2026, 3, 26)),
        entry("receipt", 10, item="INSG", lot="I1", at=utc(2026, 1, 1)),
        entry("dispense", 5, item="INSG", lot="I1", at=utc(2026, 2, 3)),
    ])
    s.flush()


def test_figures_come_from_the_ledger(session):
    month_of_ledger(session)
    h1, mor = facility_by_code(session, "H1"), item_by_code(session, "MOR10")
    start, end = period_bounds("2026-03")
    f = facility_figures(session, h1.id, start=start, end=end, amc_months=3)[mor.id]
    assert (f.opening, f.received, f.dispensed, f.issued, f.losses, f.adjustments, f.closing) == (40, 60, 55, 0, 5, 0, 40)
    assert f.stockout_days == 10
    # Jan 30, Feb 30 (the reversed dispensing does not count), March 55 over 21 of 31 days in stock.
    assert f.amc == Decimal("47.063")


def test_a_month_of_replenishment(session):
    month_of_ledger(session)
    h1 = facility_by_code(session, "H1")
    req = prepare(session, h1, by="pharm", period="2026-03", now=NOW)
    views = {v.item.code: v.line for v in flow.lines(session, req)}
    assert req.number == "REQ-H1-2026-03" and req.status == "draft"
    assert (views["MOR10"].max_stock, views["MOR10"].suggested, views["MOR10"].requested) == (142, 102, 102)
    assert views["INSG"].suggested == 1
    with pytest.raises(RequisitionExists):
        prepare(session, h1, by="pharm", period="2026-03", now=NOW)
    with pytest.raises(InvalidLine) as bad:
        flow.change(session, req, [flow.Decision("MOR10", Decimal(120))], by="pharm", now=NOW)
    assert bad.value.field == "reason"
    flow.change(session, req, [flow.Decision("MOR10", Decimal(120), "outbreak expected")], by="pharm", now=NOW)
    with pytest.raises(WrongState):
        flow.approve(session, req, [], by="store", now=NOW)
    flow.submit(session, req, by="pharm", now=NOW)
    with pytest.raises(WrongState):
        flow.change(session, req, [flow.Decision("MOR10", Decimal(1), "x")], by="pharm", now=NOW)
    flow.approve(session, req, [flow.Decision("MOR10", Decimal(100), "limited stock"),
                                flow.Decision("INSG", Decimal(50), "new patients")], by="store", now=NOW)
    assert req.status == "approved"
    fulfil(session, req, by="store", now=NOW)
    ships = shipments(session, req)
    # First expiry first out; the expired lot LX stays; nothing of INSG is held at the store.
    assert [(v.item.code, v.lot.lot_number, v.shipment.quantity) for v in ships] == [("MOR10", "LB", 80), ("MOR10", "LA", 20)]
    outs = session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "transfer_out")).all()
    assert {(o.document_number, o.counterparty, o.quantity) for o in outs} == {("WB-H1-2026-03", "H1", 80),
                                                                              ("WB-H1-2026-03", "H1", 20)}
    lb = next(v for v in ships if v.lot.lot_number == "LB")
    with pytest.raises(InvalidLine):
        receive(session, req, [Arrival(lb.shipment.id, Decimal(81))], by="pharm", now=NOW)
    receive(session, req, [Arrival(lb.shipment.id, Decimal(75), Decimal(5), "box crushed")], by="pharm", now=NOW)
    assert req.status == "received"
    mor = item_by_code(session, "MOR10")
    held = session.scalars(select(Balance.on_hand).where(Balance.facility_id == h1.id, Balance.item_id == mor.id)).all()
    assert sum(held) == 40 + 95 - 5
    lines = {r.item_code: r for r in reconciliation(session, [h1.id])}
    m, i = lines["MOR10"], lines["INSG"]
    assert (m.requested, m.approved, m.shipped, m.received, m.damaged) == (120, 100, 100, 95, 5)
    assert (m.approved_not_shipped, m.shipped_not_received) == (0, 5)
    assert (i.approved, i.shipped, i.approved_not_shipped) == (50, 0, 50)
    assert [e.action for e in flow.timeline(session, req)] == ["prepared", "changed", "submitted", "approved",
                                                                "shipped", "received"]
    assert [r.item_code for r in reconciliation(session, None, gaps_only=True)] == ["INSG", "MOR10"]
    assert [r.item_code for r in reconciliation(session, [h1.id], limit=1, offset=1)] == ["MOR10"]
    assert [r.item_code for r in reconciliation(session, [h1.id], gaps_only=True, limit=5, offset=1)] == ["MOR10"]


def test_reject_needs_a_reason_and_ends_it(session):
    month_of_ledger(session)
    req = prepare(session, facility_by_code(session, "H1"), by="p", period="2026-03", now=NOW)
    flow.submit(session, req, by="p", now=NOW)
    with pytest.raises(InvalidEntry):
        flow.reject(session, req, reason=" ", by="s", now=NOW)
    flow.reject(session, req, reason="duplicate of an emergency order", by="s", now=NOW)
    with pytest.raises(WrongState):
        fulfil(session, req, by="s", now=NOW)


def test_emergency_asks_only_for_items_below_minimum(session):
    month_of_ledger(session)
    h1 = facility_by_code(session, "H1")
    mor = item_by_code(session, "MOR10")
    post(session, entry("dispense", 35, at=utc(2026, 4, 2)))  # 5 left of an AMC of 47: emergency
    req = prepare(session, h1, by="p", emergency=True, now=NOW)
    assert req.number == "REQ-H1-2026-04-E1" and req.emergency
    assert [v.item.code for v in flow.lines(session, req)] == ["MOR10"]
    assert status_of(Decimal(5), Decimal("47.063"), level_book(session, h1).of(mor.id)) == "emergency"
    with pytest.raises(InvalidEntry):
        prepare(session, h1, by="p", period="2026-04", now=NOW)  # not ended


def test_levels_are_overridden_per_facility_and_item(session):
    build_world(session)
    h1, mor = facility_by_code(session, "H1"), item_by_code(session, "MOR10")
    set_levels(session, Levels(Decimal(4), Decimal(2), Decimal(1)), by="admin", kind="hospital", now=NOW)
    set_levels(session, Levels(Decimal(6), Decimal(2), Decimal(1)), by="admin", facility=h1, item_id=mor.id, now=NOW)
    book = level_book(session, h1)
    assert book.of(mor.id).max_months == 6 and book.of(mor.id + 1).max_months == 4
    with pytest.raises(InvalidEntry):
        set_levels(session, Levels(Decimal(1), Decimal(2), Decimal(0)), by="admin", kind="hospital", now=NOW)


def test_one_pass_over_the_ledger_gives_each_facilitys_figures(session, monkeypatch):
    from stock.requisitions import figures
    from stock.requisitions.prepare import prepare_all

    month_of_ledger(session)
    post(session, [entry("receipt", 50, facility="HC2", lot="L2", at=utc(2026, 2, 1)),  # not asked for
                   entry("dispense", 5, facility="HC2", lot="L2", at=utc(2026, 3, 3))])
    ids = [facility_by_code(session, c).id for c in ("H1", "WH-C")]
    start, end = period_bounds("2026-03")
    alone = {i: figures.facility_figures(session, i, start=start, end=end, amc_months=3) for i in ids}
    monkeypatch.setattr(figures, "SCAN_FROM", 1)  # read the whole ledger in storage order
    assert figures.figures_of(session, ids, start=start, end=end, amc_months=3) == alone
    reqs = prepare_all(session, [facility_by_code(session, "H1")], by="store", period="2026-03", now=NOW)
    assert [(v.item.code, v.line.suggested) for v in flow.lines(session, reqs[0])] == [("INSG", 1), ("MOR10", 102)]


def test_pack_sizes_enter_in_packs_and_store_base_units(session):
    from stock.errors import BadScan
    from stock.requisitions.packs import add_pack, in_base_units, scanned

    build_world(session)
    mor = item_by_code(session, "MOR10")
    add_pack(session, "MOR10", Decimal(144), "box of 144", gtin="09501101530003")
    add_pack(session, "MOR10", Decimal(10), "strip of 10")
    assert in_base_units(session, mor, Decimal(3), "box of 144") == 432
    assert in_base_units(session, mor, Decimal(3), "9501101530003") == 432  # the GTIN as scanned, 13 digits
    assert in_base_units(session, mor, Decimal(3), "") == 3
    with pytest.raises(InvalidEntry):
        in_base_units(session, mor, Decimal(1), "crate")
    with pytest.raises(InvalidEntry) as dup:
        add_pack(session, "INSG", Decimal(5), "pen", gtin="09501101530003")
    assert dup.value.field == "gtin"
    with pytest.raises(InvalidEntry):
        add_pack(session, "MOR10", Decimal("0.5"), "half tablet")  # tablets are whole
    found = scanned(session, "(01)09501101530003(17)270101(10)A1")
    assert (found.item.code, found.pack.units) == ("MOR10", 144)
    assert scanned(session, "(01)09501101530010") is None
    with pytest.raises(BadScan):
        scanned(session, "(01)09501101530004")  # wrong check digit


def test_two_stores_clerks_shipping_at_once_ship_once(Session):
    """Two people press 'ship' on the same requisition together: one ships, the other is told the
    requisition is no longer approved, and the store's stock leaves once."""
    from tests.threads import run_threads

    with Session() as s:
        month_of_ledger(s)
        req = prepare(s, facility_by_code(s, "H1"), by="p", period="2026-03", now=NOW)
        flow.submit(s, req, by="p", now=NOW)
        flow.approve(s, req, [], by="store", now=NOW)
        s.commit()
        number = req.number
    outcomes = []

    def ship(i):
        with Session() as s:
            try:
                fulfil(s, flow.get(s, number, for_update=True), by=f"clerk{i}", now=NOW)
                s.commit()
                outcomes.append("shipped")
            except WrongState:
                s.rollback()
                outcomes.append("refused")

    run_threads(ship, 2)
    assert sorted(outcomes) == ["refused", "shipped"]
    with Session() as s:
        outs = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "transfer_out")).all()
        assert sum(o.quantity for o in outs) == 102  # the suggested quantity, once


def test_timeline_notes_are_stored_as_keys_and_values():
    from stock.requisitions.notes import Part, decode, encode, part

    parts = [part("quantity", item="MOR10", before=Decimal(23), after=Decimal(60), reason="new ward"),
             part("text", text='[{"m": "not a key"}]')]
    assert decode(encode(parts)) == parts
    assert decode("MOR10: 23 → 60") == [Part("text", {"text": "MOR10: 23 → 60"})]  # written before keys
    assert encode([]) is None and decode(None) == []
