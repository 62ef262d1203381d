"""Auditors' workflow on flags: assignment and a timeline of who did what.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignee', sa.String(length=64), nullable=True))

    op.create_table('flag_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('flag_id', sa.String(length=40), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=12), nullable=False),
    sa.Column('from_state', sa.String(length=12), nullable=False),
    sa.Column('to_state', sa.String(length=12), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('assignee', sa.String(length=64), nullable=True),
    sa.CheckConstraint("action IN ('assign', 'confirm', 'dismiss', 'escalate', 'comment', 'reopen')",
                       name=op.f('ck_flag_event_action')),
    sa.CheckConstraint("from_state IN ('open', 'assigned', 'confirmed', 'dismissed', 'escalated')",
                       name=op.f('ck_flag_event_from_state')),
    sa.CheckConstraint("to_state IN ('open', 'assigned', 'confirmed', 'dismissed', 'escalated')",
                       name=op.f('ck_flag_event_to_state')),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.flag_id'], name=op.f('fk_flag_event_flag_id_flag')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flag_event'))
    )
    with op.batch_alter_table('flag_event', schema=None) as batch_op:
        batch_op.create_index('ix_flag_event_flag_at', ['flag_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('flag_event', schema=None) as batch_op:
        batch_op.drop_index('ix_flag_event_flag_at')
    op.drop_table('flag_event')
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.drop_column('assignee')
