"""An index on ledger_entry.recorded_at: an incremental FHIR pull ("since the last sync") asks for
the entries recorded in a window, which without it reads the whole ledger.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 21:20:00
"""
from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entry_recorded_at', ['recorded_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entry_recorded_at')
