"""PostgreSQL connections that sat idle in the pool are pinged before use, and replaced if the
server dropped them; those checked in moments ago are handed out without a round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from stock import db as dbmod

pytestmark = pytest.mark.postgres


def test_a_connection_dropped_while_idle_is_replaced(pg_engine, monkeypatch):
    with pg_engine.connect() as conn:
        dead_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = dbmod.make_engine(pg_engine.url.render_as_string(hide_password=False))
    with killer.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead_pid})
    killer.dispose()
    # Pretend the dropped connection has been idle longer than the ping threshold.
    for record in list(pg_engine.pool._pool.queue):
        record.info["dawa_idle_since"] -= dbmod.PING_AFTER_IDLE_S + 1
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != dead_pid


def test_a_connection_used_moments_ago_is_not_pinged(pg_engine):
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    sent: list[str] = []
    event.listen(pg_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    pings = []
    real = pg_engine.dialect.do_ping
    pg_engine.dialect.do_ping = lambda c: pings.append(c) or real(c)
    try:
        with pg_engine.connect() as conn:
            conn.execute(text("SELECT 2"))
    finally:
        pg_engine.dialect.do_ping = real
    assert pings == [] and len(sent) == 1
