"""SQLite writers of one process queue on a lock before BEGIN IMMEDIATE (stock.db), rather than
polling in SQLite's busy handler: every writer gets through, in turn, and whatever way a write
transaction ends (commit, rollback, an error, a session closed without either) the next one
starts at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text

from stock.db import session_factory
from stock.errors import InsufficientStock
from stock.ledger import post
from stock.models import LedgerEntry
from tests.conftest import make_sqlite
from tests.stock.builders import build_world, entry
from tests.threads import run_threads


@pytest.fixture
def Session(tmp_path):  # noqa: N802
    engine = make_sqlite(tmp_path)
    factory = session_factory(engine)
    with factory() as s:
        build_world(s)
        post(s, entry("receipt", 10_000, lot="L1"))
        s.commit()
    yield factory
    engine.dispose()


def _write_starts_within(Session, seconds: float) -> None:  # noqa: N803
    t = time.monotonic()
    with Session() as s:
        s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock
        s.rollback()
    assert time.monotonic() - t < seconds


def test_many_threads_writing_at_once_all_get_through(Session):  # noqa: N803
    def writer(n: int) -> None:
        for i in range(10):
            with Session() as s:
                post(s, entry("dispense", 1, lot="L1", entry_id=f"w{n}-{i}"))
                s.commit()

    run_threads(writer, 16)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "dispense")) == 160


@pytest.mark.parametrize("ending", ["commit", "rollback", "domain error", "closed without either"])
def test_the_next_writer_starts_at_once_however_a_write_ended(Session, ending):  # noqa: N803
    s = Session()
    s.execute(text("SELECT 1"))
    if ending == "commit":
        post(s, entry("dispense", 1, lot="L1"))
        s.commit()
    elif ending == "rollback":
        s.rollback()
    elif ending == "domain error":
        with pytest.raises(InsufficientStock):
            post(s, entry("dispense", 1_000_000, lot="L1"))
        s.rollback()
    s.close()
    _write_starts_within(Session, 1.0)


def test_a_reader_does_not_wait_for_a_writer(tmp_path):
    engine = make_sqlite(tmp_path)
    writer = session_factory(engine)()
    writer.execute(text("SELECT 1"))  # holds the write lock
    t = time.monotonic()
    with session_factory(engine, read_only=True)() as r:
        r.execute(text("SELECT count(*) FROM ledger_entry")).scalar()
    assert time.monotonic() - t < 1.0
    writer.close()
    engine.dispose()
