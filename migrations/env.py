"""Alembic environment: runs against the engine handed over by ``migrations.upgrade``, or the
settings' database URL when alembic is called by hand."""

from __future__ import annotations

from alembic import context

import anomaly.models  # noqa: F401  (registers detection's tables)
import stock.models  # noqa: F401  (registers the tables)
import web.models  # noqa: F401  (registers the web app's tables)
import web.alerts.models  # noqa: F401  (registers the alerts' tables)
import stock.requisitions.models  # noqa: F401  (registers replenishment's tables)
import web.interop.models  # noqa: F401  (registers the interoperability tables)
from stock.db import FOREIGN_KEYS_OFF, make_engine
from stock.models import Base

target_metadata = Base.metadata


def render_item(type_, obj, autogen_context):
    """Write the project's column types as the plain types they store, so revisions never import
    application code that may change after them."""
    from stock.models import UTCDateTime
    from stock.quantities import Quantity

    if type_ == "type" and isinstance(obj, Quantity):
        return "sa.BigInteger()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine") or make_engine()
    with engine.connect() as connection:
        # SQLite alters a table by rebuilding it, which foreign-key enforcement would refuse (the
        # old table's rows are still referenced when it is dropped): migrations run with it off,
        # and every reference is checked before the commit.
        connection.execution_options(**{FOREIGN_KEYS_OFF: True})
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} broken references, first: {broken[0]}")
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run against a database")
run_migrations_online()
