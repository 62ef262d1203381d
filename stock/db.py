"""Engines and sessions.

SQLite: WAL so readers never wait for the writer, a busy timeout so a writer waits for another
instead of failing with "database is locked", and BEGIN IMMEDIATE so a transaction that will write
takes the write lock at its start (a deferred transaction that reads then writes can deadlock
against another and fail at once, whatever the timeout). Sessions opened with ``read_only=True``
begin deferred and never block writers.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from stock.settings import get_settings

READ_ONLY = "dawa_read_only"
FOREIGN_KEYS_OFF = "dawa_foreign_keys_off"
"""Execution option, set on a connection before its transaction begins: on SQLite that transaction
runs with foreign-key enforcement off (PostgreSQL ignores it). Two writers use it:
- the bulk import, which resolves every reference it writes (facility, item, lot, patient,
  reversed entry) against the database in the same transaction: checking them again row by row
  cost more than all the rest of inserting a million ledger rows;
- migrations, which rebuild tables (SQLite's way to alter them) and check every reference with
  ``PRAGMA foreign_key_check`` before they commit.
The pragma cannot change inside a transaction, so it is set before BEGIN and set back when the
connection returns to the pool."""
_HOLDS_WRITE_LOCK = "dawa_holds_write_lock"


RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock_detected and serialization_failure: the transaction was chosen to fail so
that another could go on, and run again it will most likely succeed."""
RETRY_ATTEMPTS = 4


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock or serialization failure, worth running the transaction again."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES or getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_pause(attempt: int) -> None:
    """A short random pause before attempt ``attempt`` (1-based) again, so the two transactions
    that collided do not collide again in step."""
    import random

    time.sleep(random.uniform(0, 0.02 * 2 ** attempt))


def make_engine(url: str | None = None, **kwargs) -> Engine:
    settings = get_settings()
    url = url or settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", settings.sqlite_busy_timeout_s)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, settings.sqlite_busy_timeout_s)
        return engine
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, PING_AFTER_IDLE_S)
    return engine


PING_AFTER_IDLE_S = 5.0
"""A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out."""


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle in the pool.

    The pool's own pre-ping costs a round trip on every checkout, one per request under load,
    when a connection checked in milliseconds ago is as alive as the server. A connection idle
    for a while (across a server restart, a firewall's idle cut) is pinged first, and replaced
    by a new one if the ping fails."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["dawa_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        since = record.info.pop("dawa_idle_since", None)
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means: use another connection
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control away from the driver so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        # 64 MiB of page cache: the ledger's indexes stay in memory during large imports.
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    # Writers of this process queue on a lock before BEGIN IMMEDIATE instead of in SQLite's busy
    # handler, which polls with sleeps of up to 100 ms: under many concurrent writers (API
    # clients) that wasted the lock's idle time and made waits unfair (p95 many times the mean).
    # The busy timeout still covers writers in other processes.
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        options = conn.get_execution_options()
        if options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        if not writers.acquire(timeout=busy_timeout_s):
            raise OperationalError("BEGIN IMMEDIATE", None, Exception(
                f"another writer of this process held the database for over {busy_timeout_s:g} s"))
        conn.info[_HOLDS_WRITE_LOCK] = True
        try:
            if options.get(FOREIGN_KEYS_OFF):
                conn.info[FOREIGN_KEYS_OFF] = True
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn) -> None:
        if conn.info.pop(_HOLDS_WRITE_LOCK, False):
            writers.release()

    @event.listens_for(engine, "commit")
    def _on_commit(conn):
        # Runs just before COMMIT: the next writer's BEGIN IMMEDIATE may wait a moment in the busy
        # handler, never long.
        _release(conn)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn):
        _release(conn)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, record):
        if record.info.pop(FOREIGN_KEYS_OFF, False) and dbapi_connection is not None:
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection, record):
        if record.info.pop(_HOLDS_WRITE_LOCK, False):
            writers.release()


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False)
