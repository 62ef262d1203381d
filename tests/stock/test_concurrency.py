"""Real threads, real databases: many writers, one lot, never oversold; one entry, one row.

Every thread has its own session from ``session_factory`` and commits per post, as web requests do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from stock import balances, chain, chain_read
from stock.db import make_engine, session_factory
from stock.errors import InsufficientStock
from stock.ledger import post
from stock.models import Balance, ChainHead, Facility, LedgerEntry
from tests.stock.builders import T0, build_world, entry
from tests.threads import run_threads

THREADS = 16


def threaded_engine(engine: Engine, size: int, name: str = "dawa-test") -> Engine:
    """The test database again, with a pool big enough that every thread holds a connection
    (the default pool of 5 + 10 would make threads queue for connections, not for locks).
    On PostgreSQL its connections carry ``name`` as application_name, to be found waiting, and do
    not wait for the WAL flush at commit: locking is unchanged, durability is not under test."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.scalar(text("SELECT current_schema()"))
        return make_engine(url, pool_size=size, max_overflow=0,
                           connect_args={"options": f"-csearch_path={schema} -csynchronous_commit=off",
                                         "application_name": name})
    return make_engine(url, pool_size=size, max_overflow=0)


@pytest.fixture
def world(Session):
    with Session() as s:
        build_world(s)
        post(s, entry("receipt", 500, entry_id="R-500"))
        s.commit()


def test_concurrent_dispenses_never_oversell(engine, world):
    eng = threaded_engine(engine, THREADS)
    Session = session_factory(eng)
    attempts = 2000
    outcome: Counter[str] = Counter()
    others: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS, timeout=30)

    def dispense(t: int) -> None:
        start.wait()
        for i in range(attempts // THREADS):
            e = entry("dispense", 1, entry_id=f"D-{t}-{i}", at=T0 + timedelta(minutes=1))
            with Session() as s:
                try:
                    post(s, e)
                    s.commit()
                    result = "ok"
                except InsufficientStock:
                    s.rollback()
                    result = "insufficient"
                except Exception as exc:  # noqa: BLE001 - any other failure is the finding
                    s.rollback()
                    result = "other"
                    with lock:
                        others.append(f"{type(exc).__name__}: {exc}")
            with lock:
                outcome[result] += 1

    began = time.monotonic()
    try:
        run_threads(dispense, THREADS)
    finally:
        eng.dispose()
    elapsed = time.monotonic() - began
    print(f"\n{engine.dialect.name}: {attempts} dispense attempts by {THREADS} threads in {elapsed:.1f} s")

    assert others == []
    assert outcome == {"ok": 500, "insufficient": 1500}
    with session_factory(engine)() as s:
        assert s.scalar(select(Balance.on_hand)) == 0
        assert s.scalar(select(func.sum(LedgerEntry.effect))) == 0
        assert s.scalar(select(func.count()).where(LedgerEntry.kind == "dispense")) == 500
        head = s.scalars(select(ChainHead).join(Facility, Facility.id == ChainHead.facility_id)
                         .where(Facility.code == "H1")).one()
        assert head.length == 501
        assert balances.drift(s) == []
        report = chain.verify(s)
        assert report.ok, [str(b) for b in report.breaks]
        assert report.entries == 501


def _hold_write_lock(engine: Engine, facility_code: str):
    """Open a transaction that holds what every writer of the facility must wait for, so that all
    threads are inside ``post`` at once when it is let go. Returns (connection, transaction)."""
    conn = engine.connect()
    tx = conn.begin()  # SQLite: BEGIN IMMEDIATE, the database's one write lock
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT 1 FROM chain_head WHERE facility_id = "
                          "(SELECT id FROM facility WHERE code = :c) FOR UPDATE"), {"c": facility_code})
    return conn, tx


def _wait_until_blocked(engine: Engine, name: str, n: int, arrived: threading.Barrier) -> None:
    """Wait until ``n`` threads (connections named ``name``) are queued for a lock. On PostgreSQL
    only the first waits on the holder itself; the others queue behind it for the row's lock."""
    arrived.wait()
    if engine.dialect.name != "postgresql":
        time.sleep(0.5)  # SQLite cannot tell who waits in its busy handler
        return
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE application_name = :n AND wait_event_type = 'Lock'"),
                                   {"n": name})
            probe.rollback()
            if waiting >= n:
                return
            time.sleep(0.05)
    raise AssertionError(f"only {waiting} of {n} threads reached the chain head lock")


def _post_same_entry_from_threads(engine: Engine) -> tuple[Counter, list[str]]:
    """Post one entry_id from THREADS threads released at the same instant. Each thread that hits
    an IntegrityError records it and retries once (a client on a bad network would)."""
    name = f"dawa-same-{uuid.uuid4().hex[:8]}"
    eng = threaded_engine(engine, THREADS + 1, name)
    Session = session_factory(eng)
    same = entry("receipt", 5, entry_id="SAME-1", at=T0 + timedelta(hours=1))
    outcome: Counter[str] = Counter()
    raised: list[str] = []
    lock = threading.Lock()
    arrived = threading.Barrier(THREADS + 1, timeout=30)

    def once(_t: int) -> None:
        arrived.wait()
        with Session() as s:
            try:
                result = "created" if post(s, same)[0].created else "returned"
                s.commit()
            except IntegrityError as exc:
                s.rollback()
                with lock:
                    raised.append(str(exc.orig).splitlines()[0])
                result = "retried-" + ("created" if post(s, same)[0].created else "returned")
                s.commit()
        with lock:
            outcome[result] += 1

    failures: list[BaseException] = []

    def all_threads() -> None:
        try:
            run_threads(once, THREADS)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    conn, tx = _hold_write_lock(engine, "H1")
    runner = threading.Thread(target=all_threads, daemon=True)
    try:
        runner.start()
        _wait_until_blocked(engine, name, THREADS, arrived)
    finally:
        tx.rollback()
        conn.close()
    runner.join(60)
    eng.dispose()
    assert not runner.is_alive()
    if failures:
        raise failures[0]
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).where(LedgerEntry.entry_id == "SAME-1")) == 1
        assert s.scalar(select(Balance.on_hand)) == Decimal(505)
        assert balances.drift(s) == []
        assert chain.verify(s).ok
    return outcome, raised


def test_same_entry_from_16_threads_is_stored_once(engine, world):
    """One row and one creation, whatever else happens; a retry after an error finds the entry."""
    outcome, _raised = _post_same_entry_from_threads(engine)
    assert outcome["created"] == 1
    assert outcome["retried-created"] == 0
    assert outcome["returned"] + outcome["retried-returned"] == THREADS - 1


def test_same_entry_from_16_threads_never_raises(engine, world):
    """Idempotency holds under concurrency: a duplicate returns the stored entry, never an error.
    On PostgreSQL every thread has looked the entry_id up and found nothing before the first
    commits, so this holds only if post() looks again once it holds the facility's lock."""
    outcome, raised = _post_same_entry_from_threads(engine)
    assert raised == []
    assert outcome == {"created": 1, "returned": THREADS - 1}


@pytest.mark.parametrize("read", ["as configured", "worker processes"])
def test_verify_while_writers_append_never_reports_a_false_break(engine, world, read, monkeypatch):
    """Heads and entries are read by separate statements; appends in between are not tampering.
    On SQLite also with the entries read by worker processes, in ranges of three: their
    connections open after the session's snapshot was taken, while writers go on appending."""
    if read == "worker processes":
        if engine.dialect.name != "sqlite":
            pytest.skip("worker processes read SQLite files only")
        monkeypatch.setattr(chain_read, "PARALLEL_FROM", 1)
        monkeypatch.setattr(chain_read, "CHUNK", 3)
    eng = threaded_engine(engine, 8)
    Session = session_factory(eng)
    Reader = session_factory(eng, read_only=True)
    done = threading.Event()
    reports: list[chain.VerifyReport] = []
    facilities = ["H1", "HC2", "WH-C"]

    def write(t: int) -> None:
        for i in range(60):
            with Session() as s:
                post(s, entry("receipt", 1, facility=facilities[(t + i) % 3], lot="L1",
                              entry_id=f"W-{t}-{i}", at=T0 + timedelta(minutes=i)))
                s.commit()

    read_errors: list[BaseException] = []

    def read() -> None:
        try:
            while not done.is_set():
                with Reader() as s:
                    reports.append(chain.verify(s))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            read_errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        run_threads(write, n=4)
    finally:
        done.set()
        reader.join(30)
        eng.dispose()
    if read_errors:
        raise read_errors[0]
    assert reports, "the reader never ran"
    bad = [str(b) for r in reports for b in r.breaks]
    assert bad == []
    with session_factory(engine)() as s:
        final = chain.verify(s)
        assert final.ok and final.entries == 241


def test_batches_over_two_facilities_in_opposite_orders_never_deadlock(engine, world):
    """One writer posts to H1 then HC2, another to HC2 then H1, again and again: each batch locks
    every facility's chain first, in one order, so neither ever waits for the other in a cycle
    (PostgreSQL would break the cycle by failing one of them: 'deadlock detected')."""
    with session_factory(engine)() as s:
        post(s, [entry("receipt", 1000, facility="H1", at=T0), entry("receipt", 1000, facility="HC2", at=T0)])
        s.commit()
    rounds, n = 25, 4
    eng = threaded_engine(engine, n)
    Session = session_factory(eng)

    def writer(i: int) -> None:
        order = ["H1", "HC2"] if i % 2 else ["HC2", "H1"]
        for r in range(rounds):
            with Session() as s:
                post(s, [entry("dispense", 1, facility=f, at=T0 + timedelta(minutes=1),
                               entry_id=f"W{i}-{r}-{f}") for f in order])
                s.commit()

    try:
        run_threads(writer, n)
    finally:
        eng.dispose()
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "dispense")) \
            == rounds * n * 2
        assert chain.verify(s).ok
