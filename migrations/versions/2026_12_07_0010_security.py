"""Security: expiring API tokens, an append-only and sealed audit trail, versioned master data.

- api_token.expires_at: a token is refused from then on. Tokens issued before this revision get
  90 days from the upgrade.
- audit_record is append-only like the ledger: the database refuses UPDATE, DELETE (and TRUNCATE
  on PostgreSQL) whoever asks, and the application's role (``dawa db roles``) is not even granted them.
- audit_seal: the audit trail's hash chain, one row per sealing (web.audit_chain), append-only too.
- master_data_change: who changed which field of a patient, item or prescription, when, from what
  to what (web.masterdata_history), append-only too.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 18:00:00
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

from stock.models import UTCDateTime

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_record", "audit_seal", "master_data_change")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION dawa_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


WATCHED = {
    # table: (the column that names the row, the fields the detectors depend on)
    "item": ("code", ("controlled", "max_dispense_quantity", "unit")),
    "patient": ("id", ("deceased_on", "registered", "birth_year", "sex", "home_facility_id")),
    "prescription": ("code", ("quantity", "days_supply", "item_id", "patient_id", "issued_on", "facility_id")),
}
"""Master data the detectors compare the ledger with: a change to any of these fields, made by the
app, the CLI or by hand in the database, leaves a row in master_data_change (a database trigger,
so no path around it). A patient is named by id, never by health card."""

PG_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION dawa_master_data_change() RETURNS trigger AS $$
DECLARE
    f text;
    o text;
    n text;
    ident text;
BEGIN
    EXECUTE format('SELECT ($1).%I::text', TG_ARGV[0]) INTO ident USING NEW;
    FOREACH f IN ARRAY TG_ARGV[1:] LOOP
        EXECUTE format('SELECT ($1).%I::text, ($2).%I::text', f, f) INTO o, n USING OLD, NEW;
        IF o IS DISTINCT FROM n THEN
            INSERT INTO master_data_change (at, by, object_type, object_id, field, old, new)
            VALUES (now(), coalesce(nullif(current_setting('dawa.user', true), ''), current_user::text),
                    TG_TABLE_NAME, ident, f, o, n);
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def versioned(table: str) -> None:
    ident, fields = WATCHED[table]
    if op.get_bind().dialect.name == "postgresql":
        args = ", ".join(f"'{a}'" for a in (ident, *fields))
        op.execute(f"CREATE TRIGGER {table}_versioned AFTER UPDATE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION dawa_master_data_change({args})")
        return
    for field in fields:
        op.execute(
            f"CREATE TRIGGER {table}_versioned_{field} AFTER UPDATE OF {field} ON {table} "
            f"WHEN OLD.{field} IS NOT NEW.{field} BEGIN "
            f"INSERT INTO master_data_change (at, by, object_type, object_id, field, old, new) VALUES "
            f"(strftime('%Y-%m-%d %H:%M:%S', 'now'), 'sqlite', '{table}', CAST(NEW.{ident} AS TEXT), '{field}', "
            f"CAST(OLD.{field} AS TEXT), CAST(NEW.{field} AS TEXT)); END")


def append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION dawa_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION dawa_append_only()")
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op_name} refused'); END")


def upgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    token = sa.table('api_token', sa.column('expires_at', UTCDateTime()))
    op.execute(token.update().values(expires_at=datetime.now(timezone.utc) + timedelta(days=90)))
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)

    op.create_table('audit_seal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('through_id', sa.BigInteger(), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_seal')),
    sa.UniqueConstraint('through_id', name=op.f('uq_audit_seal_through_id'))
    )
    op.create_table('master_data_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=128), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=200), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('old', sa.Text(), nullable=True),
    sa.Column('new', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_master_data_change'))
    )
    with op.batch_alter_table('master_data_change', schema=None) as batch_op:
        batch_op.create_index('ix_master_data_change_object', ['object_type', 'object_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_CHANGE_FUNCTION)
    for table in APPEND_ONLY:
        append_only(table)
    for table in WATCHED:
        versioned(table)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, (_ident, fields) in WATCHED.items():
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_versioned ON {table}")
        else:
            for field in fields:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_versioned_{field}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS dawa_master_data_change()")
    for table in APPEND_ONLY:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS dawa_append_only()")
    with op.batch_alter_table('master_data_change', schema=None) as batch_op:
        batch_op.drop_index('ix_master_data_change_object')
    op.drop_table('master_data_change')
    op.drop_table('audit_seal')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
