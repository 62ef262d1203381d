"""Reasons and alerts kept as messages (a key and typed parameters, stock.messages) beside their
English text, so each reader sees them in their own language: flag.messages, flag_hit.messages,
and for in-app notifications and alert deliveries the message the title and body were rendered
from. Rows written before stay as they are (no messages: their stored text is shown).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 01:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLES = ('flag', 'flag_hit', 'notification', 'alert_delivery')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('messages', sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('messages')
