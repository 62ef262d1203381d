"""Ledger and patient tables in a form a large import can fill quickly; the rules stay the same.

- entry_id, (facility_id, chain_seq) and reverses stay unique, held by named unique indexes instead
  of table constraints. A large import into SQLite drops the ledger's indexes and builds them again
  once all rows are in, several times cheaper than updating them row by row, and a table's UNIQUE
  constraint cannot be dropped. The index on reverses leaves out the entries that reverse nothing
  (nearly all of them), and so do the lookup indexes on patient_id, prescription_ref and
  document_number for entries without one: every query on them asks for a value.
- The checks on ledger_entry.kind and patient.sex are written as comparisons joined by OR instead
  of an IN list, which SQLite turns into a lookup table built again for every row inserted.

SQLite rebuilds both tables for this (env.py runs migrations with foreign-key enforcement off and
checks every reference before the commit); the rebuild drops the ledger's append-only triggers,
and they are put back.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00
"""
from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_first = importlib.import_module("migrations.versions.2026_11_22_0001_ledger")

UNIQUE = {
    "uq_ledger_entry_entry_id": ["entry_id"],
    "uq_ledger_entry_facility_id_chain_seq": ["facility_id", "chain_seq"],
    "uq_ledger_entry_reverses": ["reverses"],
}
# Foreign keys that point at ledger_entry.entry_id: PostgreSQL refuses to drop the unique
# constraint they rest on, so they are taken off and put back on the unique index.
REFERENCES = [
    ("fk_ledger_entry_reverses_ledger_entry", "ledger_entry", "reverses"),
    ("fk_flag_evidence_entry_id_ledger_entry", "flag_evidence", "entry_id"),
]
NOT_REVERSING = sa.text("reverses IS NOT NULL")
SPARSE = ("patient_id", "prescription_ref", "document_number")
# (table, constraint name as the naming convention completes it, old rule, new rule)
CHECKS = [
    ("ledger_entry", "kind",
     "kind IN ('receipt', 'dispense', 'transfer_out', 'transfer_in', 'adjustment', 'loss', 'count')",
     "kind = 'receipt' OR kind = 'dispense' OR kind = 'transfer_out' OR kind = 'transfer_in' "
     "OR kind = 'adjustment' OR kind = 'loss' OR kind = 'count'"),
    ("patient", "sex", "sex IN ('F', 'M', 'U')", "sex = 'F' OR sex = 'M' OR sex = 'U'"),
]


def _unique_indexes(create_index) -> None:
    for name, columns in UNIQUE.items():
        where = NOT_REVERSING if name == "uq_ledger_entry_reverses" else None
        create_index(name, columns, unique=True, sqlite_where=where, postgresql_where=where)


def _sparse_indexes(drop_index, create_index, *, partial: bool) -> None:
    for column in SPARSE:
        name = f"ix_ledger_entry_{column}"
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        drop_index(name)
        create_index(name, [column], sqlite_where=where, postgresql_where=where)


def _checks(table: str, batch_op, *, new: bool) -> None:
    for t, name, old_rule, new_rule in CHECKS:
        if t == table:
            batch_op.drop_constraint(op.f(f"ck_{t}_{name}"), type_="check")
            batch_op.create_check_constraint(name, sa.text(new_rule if new else old_rule))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for fk, table, _column in REFERENCES:
            op.drop_constraint(fk, table, type_="foreignkey")
        for name in UNIQUE:
            op.drop_constraint(name, "ledger_entry", type_="unique")
        _unique_indexes(lambda name, cols, **kw: op.create_index(name, "ledger_entry", cols, **kw))
        for fk, table, column in REFERENCES:
            op.create_foreign_key(fk, table, "ledger_entry", [column], ["entry_id"])
        _sparse_indexes(lambda name: op.drop_index(name, table_name="ledger_entry"),
                        lambda name, cols, **kw: op.create_index(name, "ledger_entry", cols, **kw), partial=True)
        for table in ("ledger_entry", "patient"):
            with op.batch_alter_table(table) as batch_op:
                _checks(table, batch_op, new=True)
        return
    _first.drop_append_only()
    with op.batch_alter_table("ledger_entry", recreate="always") as batch_op:
        for name in UNIQUE:
            batch_op.drop_constraint(name, type_="unique")
        _unique_indexes(batch_op.create_index)
        _sparse_indexes(batch_op.drop_index, batch_op.create_index, partial=True)
        _checks("ledger_entry", batch_op, new=True)
    _first.append_only()
    with op.batch_alter_table("patient", recreate="always") as batch_op:
        _checks("patient", batch_op, new=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("ledger_entry", "patient"):
            with op.batch_alter_table(table) as batch_op:
                _checks(table, batch_op, new=False)
        _sparse_indexes(lambda name: op.drop_index(name, table_name="ledger_entry"),
                        lambda name, cols, **kw: op.create_index(name, "ledger_entry", cols, **kw), partial=False)
        for fk, table, _column in REFERENCES:
            op.drop_constraint(fk, table, type_="foreignkey")
        for name, columns in UNIQUE.items():
            op.drop_index(name, table_name="ledger_entry")
            op.create_unique_constraint(name, "ledger_entry", columns)
        for fk, table, column in REFERENCES:
            op.create_foreign_key(fk, table, "ledger_entry", [column], ["entry_id"])
        return
    with op.batch_alter_table("patient", recreate="always") as batch_op:
        _checks("patient", batch_op, new=False)
    _first.drop_append_only()
    with op.batch_alter_table("ledger_entry", recreate="always") as batch_op:
        for name, columns in UNIQUE.items():
            batch_op.drop_index(name)
            batch_op.create_unique_constraint(name, columns)
        _sparse_indexes(batch_op.drop_index, batch_op.create_index, partial=False)
        _checks("ledger_entry", batch_op, new=False)
    _first.append_only()
