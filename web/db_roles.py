"""Least-privilege PostgreSQL roles: an owner that migrates, an application role that only works
with data.

The documented setup used to run the app as a superuser, or as the tables' owner: either can
``ALTER TABLE ... DISABLE TRIGGER``, rewrite a ledger entry and recompute its chain. ``setup_roles``
(``dawa db roles``) makes two roles on the database the engine points at:

- the **owner** (LOGIN) owns the schema and every table; `dawa init`/migrations run as it;
- the **application role** (LOGIN) used by `dawa serve`, the scheduler and imports: SELECT, INSERT,
  UPDATE, DELETE on the working tables, but only SELECT and INSERT on the evidence tables
  (APPEND_ONLY: the ledger and the audit trail), no TRUNCATE, no DDL, and as a non-owner it cannot
  disable a trigger. Tables later migrations add get the same grants by default privileges.

Run it as a superuser (or a role with CREATEROLE that owns the tables) once, after `dawa init`.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

APPEND_ONLY = ("ledger_entry", "audit_record", "audit_seal", "master_data_change")
"""Evidence: rows are only ever added. The app role gets SELECT and INSERT on these, nothing more."""

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"role name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return f'"{name}"'


def setup_roles(engine: Engine, *, owner: str, app: str, owner_password: str | None = None,
                app_password: str | None = None) -> dict[str, int]:
    """Create (or update) the two roles and hand the current schema's tables to the owner with the
    application role's grants; returns counts of tables granted. Idempotent."""
    if engine.dialect.name != "postgresql":
        raise ValueError("database roles are a PostgreSQL feature; SQLite is a single-user file")
    o, a = _ident(owner), _ident(app)
    with engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        s = f'"{schema}"'
        for name, ident, password in ((owner, o, owner_password), (app, a, app_password)):
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
            conn.execute(text(f"{'ALTER' if exists else 'CREATE'} ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB "
                              "NOCREATEROLE NOBYPASSRLS"))
            if password:
                conn.execute(text(f"ALTER ROLE {ident} PASSWORD " + _literal(conn, password)))
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {o}, {a}'))
        conn.execute(text(f"ALTER SCHEMA {s} OWNER TO {o}"))
        conn.execute(text(f"REVOKE CREATE ON SCHEMA {s} FROM PUBLIC"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {a}"))
        tables = list(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema})
                      .scalars())
        for table in tables:
            conn.execute(text(f'ALTER TABLE {s}."{table}" OWNER TO {o}'))
            conn.execute(text(f'REVOKE ALL ON {s}."{table}" FROM {a}'))
            rights = ("SELECT" if table == "alembic_version" else "SELECT, INSERT" if table in APPEND_ONLY
                      else "SELECT, INSERT, UPDATE, DELETE")
            conn.execute(text(f'GRANT {rights} ON {s}."{table}" TO {a}'))
        for seq in conn.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s"),
                                {"s": schema}).scalars():
            conn.execute(text(f'ALTER SEQUENCE {s}."{seq}" OWNER TO {o}'))
            conn.execute(text(f'GRANT USAGE, SELECT ON SEQUENCE {s}."{seq}" TO {a}'))
        for fn in conn.execute(text("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
                                    "ON n.oid = p.pronamespace WHERE n.nspname = :s"), {"s": schema}).scalars():
            conn.execute(text(f"ALTER FUNCTION {fn} OWNER TO {o}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
                          f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {a}"))
    return {"tables": len(tables), "append_only": len([t for t in tables if t in APPEND_ONLY])}


def _literal(conn, value: str) -> str:
    return conn.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one()


__all__ = ["setup_roles", "APPEND_ONLY"]
