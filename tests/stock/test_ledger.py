"""The write path: every kind, every refusal, every policy break recorded rather than refused."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from stock.errors import (
    AlreadyReversed,
    EntryConflict,
    InsufficientStock,
    InvalidEntry,
    UnknownCounterparty,
    UnknownEntry,
    UnknownFacility,
    UnknownItem,
)
from stock.ledger import post, reverse
from stock.models import Balance, LedgerEntry, Lot, Patient
from stock.queries import on_hand
from tests.stock.builders import T0, build_world, entry


@pytest.fixture
def world(session):
    build_world(session)
    return session


def stock_of(session, facility="H1", item="MOR10", lot="L1") -> Decimal:
    rows = on_hand(session, facility_code=facility, item_code=item)
    return sum((r.on_hand for r in rows if r.lot_number == lot), Decimal(0))


def test_receipt_dispense_loss_adjust_count_move_stock(world):
    s = world
    post(s, entry("receipt", 100, counterparty_code="MEDIPHARM"))
    post(s, entry("dispense", 30, prescription_id="RX1"))
    post(s, entry("loss", 5, reason="damaged"))
    post(s, entry("adjustment", -3))
    post(s, entry("adjustment", 1))
    assert stock_of(s) == 63
    [counted] = post(s, entry("count", 60))
    s.commit()
    assert stock_of(s) == 60
    assert counted.entry.book_quantity == 63 and counted.entry.effect == -3
    total = s.scalar(select(func.sum(LedgerEntry.effect)))
    assert total == 60


def test_decimal_quantity_only_in_divisible_unit(world):
    s = world
    post(s, entry("receipt", "100.5", item="INSG"))
    post(s, entry("dispense", "7.5", item="INSG"))
    assert stock_of(s, item="INSG") == Decimal("93")
    with pytest.raises(InvalidEntry) as err:
        post(s, entry("receipt", "2.5", item="MOR10"))
    assert err.value.field == "quantity" and "whole number of tablets" in str(err.value)


def test_insufficient_stock_names_lot_on_hand_and_asked(world):
    s = world
    post(s, entry("receipt", 10))
    with pytest.raises(InsufficientStock) as err:
        post(s, entry("dispense", 11))
    msg = str(err.value)
    assert "lot L1" in msg and "on hand 10" in msg and "asked 11" in msg and "H1" in msg
    s.rollback()


@pytest.mark.parametrize(
    "kind,qty,kw,field",
    [
        ("receipt", 0, {}, "quantity"),
        ("dispense", -1, {}, "quantity"),
        ("loss", 5, {"reason": ""}, "reason"),
        ("adjustment", 0, {}, "quantity"),
        ("count", -1, {}, "quantity"),
        ("dispense", 1, {"health_card_id": None}, "health_card_id"),
        ("transfer_out", 1, {"counterparty_code": None}, "counterparty_code"),
        ("teleport", 1, {}, "kind"),
        ("receipt", 1, {"entry_id": ""}, "entry_id"),
        ("receipt", 1, {"recorded_by": ""}, "recorded_by"),
        ("receipt", 1, {"lot": "NEW", "expiry_date": None}, "expiry_date"),
        # Text holding the hash chain's separators (or NUL) could move between fields unseen.
        ("loss", 1, {"reason": "dam\x1faged"}, "reason"),
        ("receipt", 1, {"document_number": "GRN\x1e1"}, "document_number"),
        ("dispense", 1, {"health_card_id": "LY0000000001\x00"}, "health_card_id"),
        ("receipt", 1, {"lot": "L\x1f1"}, "lot_number"),
    ],
)
def test_malformed_entries_refused_with_field(world, kind, qty, kw, field):
    s = world
    post(s, entry("receipt", 10))
    kw = dict(kw)  # the parametrize dict is shared by both backends' runs
    lot = kw.pop("lot", "L1")
    with pytest.raises(InvalidEntry) as err:
        post(s, entry(kind, qty, lot=lot, **kw))
    assert err.value.field == field


def test_naive_timestamp_refused(world):
    with pytest.raises(InvalidEntry) as err:
        post(world, entry("receipt", 1, at=datetime(2026, 3, 1, 9, 0)))
    assert err.value.field == "occurred_at"


def test_unknown_facility_item_counterparty(world):
    s = world
    with pytest.raises(UnknownFacility):
        post(s, entry("receipt", 1, facility="NOPE"))
    with pytest.raises(UnknownItem):
        post(s, entry("receipt", 1, item="NOPE"))
    post(s, entry("receipt", 5))
    with pytest.raises(UnknownCounterparty):
        post(s, entry("transfer_out", 1, counterparty_code="NOPE"))


def test_unknown_lot_on_dispense_refused(world):
    with pytest.raises(InvalidEntry) as err:
        post(world, entry("dispense", 1, lot="GHOST"))
    assert err.value.field == "lot_number"


def test_conflicting_expiry_refused(world):
    s = world
    post(s, entry("receipt", 5))
    with pytest.raises(InvalidEntry) as err:
        post(s, entry("receipt", 5, expiry_date=date(2029, 1, 1)))
    assert err.value.field == "expiry_date"


def test_untracked_lot_needs_no_expiry(world):
    s = world
    post(s, entry("receipt", 50, item="GLOVE", lot="", expiry_date=None))
    post(s, entry("dispense", 2, item="GLOVE", lot=""))
    assert stock_of(s, item="GLOVE", lot="") == 48


def test_idempotent_same_content_is_noop(world):
    s = world
    first = post(s, entry("receipt", 10, entry_id="R-1"))[0]
    again = post(s, entry("receipt", 10, entry_id="R-1"))[0]
    s.commit()
    assert first.created and not again.created
    assert again.entry.id == first.entry.id
    assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    assert stock_of(s) == 10


def test_idempotent_different_content_conflicts(world):
    s = world
    post(s, entry("receipt", 10, entry_id="R-1"))
    with pytest.raises(EntryConflict) as err:
        post(s, entry("receipt", 11, entry_id="R-1"))
    assert "quantity" in err.value.differences


def test_same_instant_in_other_zone_is_same_content(world):
    s = world
    post(s, entry("receipt", 10, entry_id="R-1"))
    utc = T0.astimezone(timezone.utc)
    assert not post(s, entry("receipt", 10, entry_id="R-1", at=utc))[0].created


def test_policy_breaks_recorded_not_refused(world):
    s = world
    post(s, entry("receipt", 500))
    # Received while it was still good; dispensed after it expired.
    post(s, entry("receipt", 10, lot="OLD", expiry_date=date(2026, 1, 31), at=datetime(2026, 1, 5, tzinfo=timezone.utc)))
    notes = {}
    for label, e in {
        "unregistered": entry("dispense", 5, health_card_id="LY9999999999", prescription_id=None),
        "deceased": entry("dispense", 5, health_card_id="LY0000000002", prescription_id=None),
        "beyond": entry("dispense", 40, prescription_id="RX1"),
        "ceiling": entry("dispense", 90, prescription_id=None),
        "expired": entry("dispense", 2, lot="OLD", prescription_id="RX1"),
        "unknown_rx": entry("dispense", 1, prescription_id="RX-NOPE"),
    }.items():
        notes[label] = {n.code for n in post(s, e)[0].notes}
    s.commit()
    assert "unregistered_patient" in notes["unregistered"] and "no_prescription" in notes["unregistered"]
    assert "deceased_patient" in notes["deceased"]
    assert "beyond_prescription" in notes["beyond"]
    assert "over_ceiling" in notes["ceiling"]
    assert "expired_lot" in notes["expired"]
    assert "beyond_prescription" in notes["expired"]  # 40 + 2 against 30
    assert "unknown_prescription" in notes["unknown_rx"]
    assert s.scalar(select(func.count()).where(LedgerEntry.kind == "dispense")) == 6
    ghost = s.scalars(select(Patient).where(Patient.health_card_id == "LY9999999999")).one()
    assert ghost.registered is False


def test_reverse_writes_compensating_entry(world):
    s = world
    post(s, entry("receipt", 100))
    [d] = post(s, entry("dispense", 30, entry_id="D-1", prescription_id="RX1"))
    rev = reverse(s, "D-1", reason="wrong patient", by="u2")
    s.commit()
    assert rev.entry.kind == "adjustment" and rev.entry.quantity == 30 and rev.entry.reverses == "D-1"
    assert rev.entry.recorded_by == "u2" and rev.entry.reason == "wrong patient"
    assert stock_of(s) == 100
    assert s.get(LedgerEntry, d.entry.id).quantity == 30  # original untouched
    with pytest.raises(AlreadyReversed):
        reverse(s, "D-1", reason="again", by="u2")
    with pytest.raises(UnknownEntry):
        reverse(s, "NOPE", reason="x", by="u2")


def test_reverse_refused_when_stock_already_gone(world):
    s = world
    post(s, entry("receipt", 10, entry_id="R-1"))
    post(s, entry("dispense", 8))
    with pytest.raises(InsufficientStock):
        reverse(s, "R-1", reason="supplier error", by="u2")


def test_transfer_both_legs_and_match(world):
    from stock.transfers import match_transfers

    s = world
    post(s, entry("receipt", 100, facility="WH-C"))
    post(s, entry("transfer_out", 40, facility="WH-C", counterparty_code="HC2", document_number="WB-1"))
    post(s, entry("transfer_out", 10, facility="WH-C", counterparty_code="H1"))
    post(s, entry("transfer_in", 40, facility="HC2", counterparty_code="WH-C", document_number="WB-1",
                  at=T0 + timedelta(days=2)))
    post(s, entry("transfer_in", 10, facility="H1", counterparty_code="WH-C", at=T0 + timedelta(days=1)))
    s.commit()
    assert stock_of(s, facility="WH-C") == 50 and stock_of(s, facility="HC2") == 40
    pairs = match_transfers(s)
    assert len(pairs.matched) == 2 and not pairs.unmatched_out and not pairs.unmatched_in
    by_doc = {p.document_number: p for p in pairs.matched}
    assert by_doc["WB-1"].quantity_in == 40


def test_transfer_to_self_refused(world):
    s = world
    post(s, entry("receipt", 10))
    with pytest.raises(InvalidEntry):
        post(s, entry("transfer_out", 1, counterparty_code="H1"))


def test_balance_check_constraint_holds_in_database(world):
    """The CHECK is there even if application code were bypassed."""
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    s = world
    post(s, entry("receipt", 10))
    s.commit()
    with pytest.raises(IntegrityError):
        s.execute(update(Balance).values(on_hand=Decimal(-1)))
        s.flush()
    s.rollback()


def test_lot_is_shared_across_facilities(world):
    s = world
    post(s, entry("receipt", 10, facility="WH-C"))
    post(s, entry("transfer_out", 4, facility="WH-C", counterparty_code="H1"))
    post(s, entry("transfer_in", 4, facility="H1", counterparty_code="WH-C", expiry_date=None))
    s.commit()
    assert s.scalar(select(func.count()).select_from(Lot)) == 1


@pytest.mark.parametrize("micro", [0, 1, 999_499, 999_500, 999_999])
def test_chain_verifies_whatever_the_microseconds(world, micro):
    """Times near a whole second must encode the same in Python and in the database's SQL."""
    from stock import chain

    s = world
    t = T0.replace(microsecond=micro)
    post(s, entry("receipt", 10, at=t), now=t.astimezone(timezone.utc))
    s.commit()
    assert chain.verify(s).ok


def test_serial_number_stored_and_part_of_idempotency(world):
    s = world
    post(s, entry("receipt", 10, entry_id="R-1"))
    first = post(s, entry("dispense", 1, entry_id="D-1", serial_number="SN42"))[0]
    s.commit()
    assert first.entry.serial_number == "SN42"
    assert not post(s, entry("dispense", 1, entry_id="D-1", serial_number="SN42"))[0].created
    with pytest.raises(EntryConflict) as err:
        post(s, entry("dispense", 1, entry_id="D-1", serial_number="SN43"))
    assert err.value.differences["serial_number"] == ("SN42", "SN43")
    with pytest.raises(EntryConflict):
        post(s, entry("dispense", 1, entry_id="D-1"))
    s.rollback()
    # An empty serial is no serial.
    assert post(s, entry("dispense", 1, entry_id="D-2", serial_number=""))[0].entry.serial_number is None
    assert not post(s, entry("dispense", 1, entry_id="D-2"))[0].created


@pytest.mark.parametrize("serial,words", [
    ("A" * 21, "longer than 20 characters"),
    ("SN 42", "' '"),
    ("SN\x1f42", "'\\x1f'"),
    ("SN#42", "'#'"),
    ("sérié", "'é'"),
])
def test_serial_outside_gs1_rules_refused(world, serial, words):
    s = world
    post(s, entry("receipt", 10))
    with pytest.raises(InvalidEntry) as err:
        post(s, entry("dispense", 1, serial_number=serial))
    assert err.value.field == "serial_number"
    assert words in err.value.message


def test_expired_lot_received_only_for_destruction(world):
    """The rule book's lot rule: a receipt of a lot that expired before the day it happens is
    refused unless its reason says it comes for destruction; a lot received while good may be
    received again after it expired only for destruction too."""
    s = world
    old = entry("receipt", 10, lot="OLD", expiry_date=date(2026, 2, 28))
    with pytest.raises(InvalidEntry) as err:
        post(s, old)
    assert err.value.field == "expiry_date" and "received only for destruction" in str(err.value)
    [done] = post(s, entry("receipt", 10, lot="OLD", expiry_date=date(2026, 2, 28), reason="destruction",
                           entry_id=old.entry_id))
    assert done.created and done.entry.effect == 10
    with pytest.raises(InvalidEntry):
        post(s, entry("receipt", 5, lot="OLD"))  # the lot is known, and still expired
    # The day it expires it may still come in.
    assert post(s, entry("receipt", 5, lot="LAST", expiry_date=T0.date()))[0].created
