"""The reversal rule of the rule book (stock.rules), through both write paths: post() one entry at
a time and the bulk import. A reversal is the exact inverse of its target: same facility, item and
lot, the opposite effect of the same quantity; its target is no reversal and is reversed once.
Both databases."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stock.csvread import ImportFailed
from stock.errors import AlreadyReversed, InvalidEntry
from stock.importer import import_dataset
from stock.ledger import post, reverse
from stock.rules import Broken
from tests.stock.builders import build_world, entry
from tests.stock.test_importer import LEDGER_ROWS, count_entries, write_dataset
from tests.stock.test_ledger import stock_of


@pytest.fixture
def world(session):
    build_world(session)
    post(session, [entry("receipt", 100, entry_id="R-1"), entry("receipt", 50, facility="HC2", entry_id="R-2"),
                   entry("dispense", 90, entry_id="D-90", prescription_id="RX1")])
    session.commit()
    return session


def refused(session, e) -> Broken:
    with pytest.raises(InvalidEntry) as err:
        post(session, e)
    session.rollback()
    assert isinstance(err.value, Broken), err.value
    return err.value


def test_a_fake_reversal_is_refused_and_the_real_one_still_goes_through(world):
    """The probe: an adjustment of +1 naming a 90-tablet dispense would erase the evidence of 89."""
    fake = refused(world, entry("adjustment", 1, entry_id="FAKE", reverses="D-90", reason="correction"))
    assert fake.code == "not_inverse" and fake.field == "quantity"
    assert "changes stock by 1; reversing D-90 takes 90" in fake.message
    assert stock_of(world) == 10
    real = reverse(world, "D-90", reason="wrong patient", by="u2")
    world.commit()
    assert real.entry.effect == 90 and stock_of(world) == 100


@pytest.mark.parametrize("overrides,code,field", [
    (dict(facility="HC2", lot="L1"), "not_inverse", "reverses"),           # another facility's entry
    (dict(item="INSG", lot="L1"), "not_inverse", "reverses"),
    (dict(lot="L2"), "not_inverse", "reverses"),
    (dict(kind="receipt", quantity=90), "", ""),                           # the same effect by another kind
    (dict(kind="adjustment", quantity=-90), "not_inverse", "quantity"),    # the same direction
    (dict(kind="count", quantity=100), "count_reverses", "kind"),
], ids=["facility", "item", "lot", "receipt-inverse", "same-sign", "count"])
def test_only_the_exact_inverse_reverses(world, overrides, code, field):
    kw = dict(kind="adjustment", quantity=90, facility="H1", item="MOR10", lot="L1")
    kw.update(overrides)
    kind, quantity = kw.pop("kind"), kw.pop("quantity")
    if kw["facility"] == "HC2" or kw["lot"] == "L2":
        post(world, entry("receipt", 5, facility=kw["facility"], item=kw["item"], lot=kw["lot"]))
    e = entry(kind, quantity, entry_id="REV", reverses="D-90", reason="correction", **kw)
    if not code:  # any kind may be the inverse: a receipt of 90 back into the lot
        assert post(world, e)[0].created
        return
    broken = refused(world, e)
    assert (broken.code, broken.field) == (code, field)


def test_a_reversal_is_not_reversed_and_an_entry_is_reversed_once(world):
    reverse(world, "D-90", reason="wrong patient", by="u2", new_id="V-1")
    world.commit()
    with pytest.raises(AlreadyReversed, match="Entry V-1 is itself a reversal"):
        post(world, entry("adjustment", -90, entry_id="V-2", reverses="V-1", reason="undo"))
    world.rollback()
    with pytest.raises(AlreadyReversed, match="Entry D-90 was already reversed"):
        post(world, entry("adjustment", 90, entry_id="V-3", reverses="D-90", reason="again"))
    world.rollback()


def test_a_reversal_needs_a_reason_whatever_its_kind(world):
    broken = refused(world, entry("receipt", 90, entry_id="V-R", reverses="D-90"))
    assert (broken.code, broken.field) == ("reversal_reason", "reason")


def import_problems(session, tmp_path, *rows) -> list[str]:
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, write_dataset(tmp_path / "ds", ledger_rows=LEDGER_ROWS[:3] + list(rows)))
    session.rollback()
    assert count_entries(session) == 0
    return [str(p) for p in err.value.problems]


DISPENSE = "D,2026-03-09T09:00:00Z,WH-C,dispense,MOR10,L1,,90,LY0000000001,,,,u,,"


@pytest.mark.parametrize("row,expected", [
    ("F,2026-03-09T10:00:00Z,WH-C,adjustment,MOR10,L1,,1,,,,correction,u,,D",
     "ledger.csv:6: quantity: Entry F changes stock by 1; reversing D takes 90"),
    ("F,2026-03-09T10:00:00Z,WH-C,adjustment,INSG,I1,,90,,,,correction,u,,D",
     "ledger.csv:6: reverses: Entry F is of another item than D"),
    ("F,2026-03-09T10:00:00Z,WH-C,count,MOR10,L1,,1000,,,,recount,u,,D",
     "ledger.csv:6: kind: A count cannot reverse an entry"),
    ("F,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,90,,,,,u,,D",
     "ledger.csv:6: reason: A reversal needs a reason."),
], ids=["partial", "other-item", "count", "no-reason"])
def test_the_import_refuses_what_post_refuses(session, tmp_path, row, expected):
    problems = import_problems(session, tmp_path, DISPENSE, row)
    assert any(p.startswith(expected) for p in problems), problems


def test_the_import_refuses_a_reversal_of_another_facilitys_entry(session, tmp_path):
    rows = ["T,2026-03-09T08:00:00Z,WH-C,transfer_out,MOR10,L1,,100,,,H1,,u,,",
            "TI,2026-03-09T08:30:00Z,H1,transfer_in,MOR10,L1,2028-01-31,100,,,WH-C,,u,,",
            DISPENSE, "F,2026-03-09T10:00:00Z,H1,adjustment,MOR10,L1,,90,,,,correction,u,,D"]
    problems = import_problems(session, tmp_path, *rows)
    assert [p for p in problems if ": reverses: " in p] == [
        "ledger.csv:8: reverses: Entry F is of another facility than D, so it cannot reverse it: "
        "a reversal is the exact inverse of its target."]


def test_the_import_checks_a_stored_target_too(session, tmp_path):
    import_dataset(session, write_dataset(tmp_path / "one", ledger_rows=LEDGER_ROWS[:3] + [DISPENSE]))
    session.commit()
    again = write_dataset(tmp_path / "two", ledger_rows=[
        "F,2026-03-10T10:00:00Z,WH-C,adjustment,MOR10,L1,,1,,,,correction,u,,D"])
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, again)
    session.rollback()
    assert [str(p) for p in err.value.problems] == [
        "ledger.csv:2: quantity: Entry F changes stock by 1; reversing D takes 90. "
        "A partial correction is an adjustment without reverses."]
    ok = write_dataset(tmp_path / "three", ledger_rows=[
        "V,2026-03-10T10:00:00Z,WH-C,adjustment,MOR10,L1,,90,,,,correction,u,,D"])
    assert import_dataset(session, ok).entries_added == 1
    session.commit()
    from stock.queries import on_hand
    assert sum(r.on_hand for r in on_hand(session, facility_code="WH-C", item_code="MOR10")) == Decimal(1000)
