"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations


import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

import migrations
import anomaly.models  # noqa: F401  (detection's tables are part of the schema)
import web.models  # noqa: F401  (so are the web app's)
import web.alerts.models  # noqa: F401  (and the alerts')
import stock.requisitions.models  # noqa: F401  (and replenishment's)
import web.interop.models  # noqa: F401  (and the interoperability ones)
from anomaly import scan
from stock import chain
from stock.db import make_engine, session_factory
from stock.importer import import_dataset
from stock.models import Base
from tests.conftest import PgSchema, _pg_or_skip
from sample_data import SMALL



def test_models_and_migrations_agree(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_migrations_are_at_head_and_reversible(engine):
    assert migrations.is_current(engine)
    migrations.downgrade(engine, "base")
    assert "ledger_entry" not in inspect(engine).get_table_names()
    migrations.upgrade(engine)
    assert migrations.is_current(engine)
    assert "ledger_entry" in inspect(engine).get_table_names()


@pytest.fixture
def at_0007(request, tmp_path):
    """A database at revision 0007, before the ledger's uniqueness rules became indexes."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'dawa.sqlite'}")
        migrations.upgrade(engine, "0007")
        yield engine
        engine.dispose()
    else:
        schema = PgSchema(_pg_or_skip())
        migrations.upgrade(schema.engine, "0007")
        yield schema.engine
        schema.drop()


@pytest.mark.parametrize("at_0007", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_unique_indexes_migration_keeps_data_and_rules(at_0007):
    """0008 rebuilds how uniqueness is held: every entry, reversal and flag's evidence survives,
    the chain still verifies, and duplicates, rewrites and dangling references are still refused."""
    engine = at_0007
    Session = session_factory(engine)
    # The data are written by today's code, so at today's schema, and taken back down to 0007
    # (the models hold columns 0007 does not have).
    migrations.upgrade(engine)
    with Session() as s:
        import_dataset(s, SMALL)
        s.commit()
        scan.run(s)
        s.commit()
    migrations.downgrade(engine, "0007")
    with Session() as s:
        before = {t: s.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("ledger_entry", "flag_evidence")}
        reversals = s.scalar(text("SELECT count(*) FROM ledger_entry WHERE reverses IS NOT NULL"))
        a, b = s.execute(text("SELECT entry_id, reverses FROM ledger_entry WHERE reverses IS NOT NULL "
                              "LIMIT 1")).one()
    assert before["flag_evidence"] > 0 and reversals > 0

    migrations.upgrade(engine)
    assert migrations.is_current(engine)
    with Session() as s:
        assert {t: s.scalar(text(f"SELECT count(*) FROM {t}")) for t in before} == before
        assert chain.verify(s).ok
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM ledger_entry WHERE entry_id = :e"), {"e": a}).mappings().one()
    copy = {k: v for k, v in row.items() if k != "id"}

    def refused(sql: str, params: dict) -> None:
        with pytest.raises((IntegrityError, DBAPIError)), engine.begin() as conn:
            conn.execute(text(sql), params)

    cols = ", ".join(copy)
    values = ", ".join(f":{k}" for k in copy)
    insert = f"INSERT INTO ledger_entry ({cols}) VALUES ({values})"
    refused(insert, copy)  # the same entry_id (and chain position) again
    refused(insert, {**copy, "entry_id": "again-" + a, "chain_seq": 10**9})  # b reversed twice
    refused(insert, {**copy, "entry_id": "dangling-" + a, "chain_seq": 10**9 + 1, "reverses": "no-such-entry"})
    refused(insert, {**copy, "entry_id": "seq-" + a, "reverses": None})  # a taken chain position
    refused(insert, {**copy, "entry_id": "kind-" + a, "chain_seq": 10**9 + 2, "reverses": None, "kind": "gift"})
    refused("INSERT INTO patient (health_card_id, sex, registered) VALUES ('LY-NEW', 'X', true)", {})
    refused("UPDATE ledger_entry SET quantity = quantity + 1 WHERE entry_id = :e", {"e": a})
    refused("DELETE FROM ledger_entry WHERE entry_id = :e", {"e": b})
    with Session() as s:
        assert s.scalar(text("SELECT count(*) FROM ledger_entry")) == before["ledger_entry"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_reason_messages_migration_keeps_reasons_as_text(backend, tmp_path):
    """0014 adds the messages beside the reason text; going back drops them and keeps the text,
    and a flag without messages (one from before) is read by its text."""
    from anomaly.models import Flag, FlagHit
    from web.messages import reason_text

    if backend == "sqlite":
        engine, schema = make_engine(f"sqlite:///{tmp_path / 'dawa.sqlite'}"), None
    else:
        schema = PgSchema(_pg_or_skip())
        engine = schema.engine
    try:
        migrations.upgrade(engine)
        Session = session_factory(engine)
        with Session() as s:
            import_dataset(s, SMALL)
            s.commit()
            scan.run(s)
            s.commit()
            reasons = dict(s.execute(text("SELECT flag_id, reason FROM flag")).all())
            assert reasons and all(s.scalars(text("SELECT messages FROM flag_hit")))
        migrations.downgrade(engine, "0013")
        for table in ("flag", "flag_hit", "notification", "alert_delivery"):
            assert "messages" not in {c["name"] for c in inspect(engine).get_columns(table)}
        with engine.connect() as conn:
            assert dict(conn.execute(text("SELECT flag_id, reason FROM flag")).all()) == reasons
        migrations.upgrade(engine)
        with Session() as s:
            flags = list(s.scalars(select(Flag)))
            assert {f.flag_id: f.reason for f in flags} == reasons and all(f.messages is None for f in flags)
            hit = s.scalars(select(FlagHit)).first()
            assert reason_text(hit, "fr") == hit.reason
    finally:
        if schema is not None:
            schema.drop()
        else:
            engine.dispose()
