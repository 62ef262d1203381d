"""The rule book's time rule through post() and the import: no movement after its recording (beyond
a small clock skew), a reason for one older than the catch-up window, and recording order kept, so
that a data set with back-dated entries exports and re-imports to the same chains. Both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from stock import balances, chain
from stock.csvread import ImportFailed
from stock.db import session_factory
from stock.importer import import_dataset
from stock.ledger import post
from stock.rules import Broken
from tests.stock.builders import build_world, entry
from tests.stock.test_importer import LEDGER_ROWS, write_dataset
from tests.web.interop_helpers import other_engine  # noqa: F401 - fixture
from web.interop import dataset

NOW = datetime(2026, 4, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def world(session):
    build_world(session)
    post(session, entry("receipt", 100, entry_id="R-1"), now=NOW)
    session.commit()
    return session


def test_a_movement_after_its_recording_is_refused(world):
    with pytest.raises(Broken) as err:
        post(world, entry("dispense", 1, at=NOW + timedelta(hours=1), prescription_id="RX1"), now=NOW)
    world.rollback()
    assert (err.value.code, err.value.field) == ("future", "occurred_at")
    # a tablet's clock a minute ahead is no typing error
    assert post(world, entry("dispense", 1, at=NOW + timedelta(minutes=1), prescription_id="RX1"), now=NOW)[0].created


def test_an_entry_older_than_the_catch_up_window_needs_a_reason(world):
    old = entry("dispense", 1, entry_id="OLD", at=NOW - timedelta(days=40), prescription_id="RX1")
    with pytest.raises(Broken) as err:
        post(world, old, now=NOW, catch_up=timedelta(days=30))
    world.rollback()
    assert (err.value.code, err.value.field) == ("late", "reason")
    explained = entry("dispense", 1, entry_id="OLD", at=NOW - timedelta(days=40), prescription_id="RX1",
                      reason="paper register typed in after the power cut")
    assert post(world, explained, now=NOW, catch_up=timedelta(days=30))[0].created
    world.commit()
    # a retry days later answers as before: the time rule binds new entries only
    assert not post(world, explained, now=NOW + timedelta(days=5), catch_up=timedelta(days=30))[0].created


def import_problems(session, folder, **kw) -> list[str]:
    with pytest.raises(ImportFailed) as err:
        import_dataset(session, folder, **kw)
    session.rollback()
    return [str(p) for p in err.value.problems]


def test_the_import_holds_rows_to_the_same_time_rule(session, tmp_path):
    future = "F,2026-04-01T13:00:00Z,WH-C,loss,MOR10,L1,,1,,,,damaged,u,,"
    problems = import_problems(session, write_dataset(tmp_path / "a", ledger_rows=LEDGER_ROWS[:1] + [future]),
                               now=NOW)
    assert problems == ["ledger.csv:3: occurred_at: occurred_at 2026-04-01T13:00:00Z is after the entry was "
                        "recorded (2026-04-01T12:00:00+00:00): a movement is recorded once it has happened"]
    late = "L,2026-02-01T10:00:00Z,WH-C,receipt,MOR10,L1,2028-01-31,5,,,,,u,,"
    problems = import_problems(session, write_dataset(tmp_path / "b", ledger_rows=LEDGER_ROWS[:1] + [late]),
                               now=NOW, catch_up=timedelta(days=40))
    assert len(problems) == 1 and problems[0].startswith("ledger.csv:3: reason: occurred_at 2026-02-01T10:00:00Z "
                                                         "is more than 40 days before")
    # A data set of history is not held to a window unless one is asked for.
    assert import_dataset(session, write_dataset(tmp_path / "c", ledger_rows=LEDGER_ROWS[:1] + [late]),
                          now=NOW).entries_added == 2


def test_back_dated_entries_export_and_re_import_to_the_same_chains(engine, other_engine, tmp_path):  # noqa: F811
    """A dispense dated before its lot first arrived, recorded after it (stock is checked in recording
    order), and a back-dated receipt: the export re-imports in recording order, to the same chain
    heads and balances."""
    Session, Other = session_factory(engine), session_factory(other_engine)
    with Session() as s:
        import_dataset(s, write_dataset(tmp_path / "ds"), now=NOW)
        s.commit()
        post(s, entry("receipt", 20, facility="HC2", item="MOR10", lot="L7", entry_id="LATE-R",
                      at=datetime(2026, 3, 10, 8, tzinfo=timezone.utc)), now=NOW + timedelta(hours=1))
        # Dated the 9th, before the lot's receipt of the 10th; recorded after it.
        post(s, entry("dispense", 15, facility="HC2", item="MOR10", lot="L7", entry_id="BACK-D",
                      at=datetime(2026, 3, 9, 8, tzinfo=timezone.utc), prescription_id="RX1"),
             now=NOW + timedelta(hours=2))
        s.commit()
        heads, stock = chain.heads(s), master_stock(s)
    with session_factory(engine, read_only=True)() as s:
        dataset.write(s, tmp_path / "out", "csv", key=None, default_zone="Africa/Tripoli", clear_cards=True)
    with Other() as o:
        import_dataset(o, tmp_path / "out", now=NOW + timedelta(days=1))
        o.commit()
        assert chain.heads(o) == heads
        assert master_stock(o) == stock
        assert chain.verify(o).ok and balances.drift(o) == []


def master_stock(session) -> list[tuple]:
    return session.execute(text(
        "SELECT f.code, l.lot_number, b.on_hand FROM balance b JOIN facility f ON f.id = b.facility_id "
        "JOIN lot l ON l.id = b.lot_id ORDER BY 1, 2")).all()
