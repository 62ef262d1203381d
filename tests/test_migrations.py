"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import migrations
import anomaly.models  # noqa: F401  (detection's tables are part of the schema)
import web.models  # noqa: F401  (so are the web app's)
import web.alerts.models  # noqa: F401  (and the alerts')
from stock.models import Base


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
