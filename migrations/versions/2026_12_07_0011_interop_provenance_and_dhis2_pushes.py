"""Interoperability: provenance of imported movements, and DHIS2 sends with their import summaries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'import_provenance',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('entry_id', sa.String(length=64), nullable=False),
        sa.Column('source_system', sa.String(length=200), nullable=True),
        sa.Column('source_user', sa.String(length=200), nullable=True),
        sa.Column('lot_choice', sa.String(length=16), nullable=True),
        sa.Column('imported_by', sa.String(length=64), nullable=False),
        sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_provenance')),
        sa.UniqueConstraint('entry_id', name=op.f('uq_import_provenance_entry_id')),
    )
    op.create_table(
        'dhis2_push',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('period', sa.String(length=7), nullable=False),
        sa.Column('server', sa.String(length=500), nullable=False),
        sa.Column('pushed_by', sa.String(length=64), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('imported', sa.Integer(), nullable=False),
        sa.Column('updated', sa.Integer(), nullable=False),
        sa.Column('ignored', sa.Integer(), nullable=False),
        sa.Column('deleted', sa.Integer(), nullable=False),
        sa.Column('conflicts', sa.Text(), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dhis2_push')),
    )
    op.create_index(op.f('ix_dhis2_push_at'), 'dhis2_push', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_dhis2_push_at'), table_name='dhis2_push')
    op.drop_table('dhis2_push')
    op.drop_table('import_provenance')
