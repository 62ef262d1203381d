"""Detection: scans, flags with evidence and detector hits, verdicts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:15:28.720976
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('scan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('through_seq', sa.BigInteger(), nullable=False),
    sa.Column('entries_read', sa.BigInteger(), nullable=False),
    sa.Column('flags_new', sa.Integer(), nullable=False),
    sa.Column('flags_updated', sa.Integer(), nullable=False),
    sa.Column('flags_total', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scan'))
    )
    op.create_table('flag',
    sa.Column('flag_id', sa.String(length=40), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=20), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('rank_score', sa.Float(), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('detectors', sa.String(length=400), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_scan_id', sa.Integer(), nullable=False),
    sa.Column('last_scan_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("severity IN ('low', 'medium', 'high')", name=op.f('ck_flag_severity')),
    sa.CheckConstraint("status IN ('open', 'assigned', 'confirmed', 'dismissed', 'escalated')", name=op.f('ck_flag_status')),
    sa.CheckConstraint("subject IN ('entry', 'patient', 'user', 'facility_item', 'transfer', 'facility')", name=op.f('ck_flag_subject')),
    sa.CheckConstraint('score >= 0 AND score <= 1', name=op.f('ck_flag_score_range')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_flag_facility_id_facility')),
    sa.ForeignKeyConstraint(['first_scan_id'], ['scan.id'], name=op.f('fk_flag_first_scan_id_scan')),
    sa.ForeignKeyConstraint(['last_scan_id'], ['scan.id'], name=op.f('fk_flag_last_scan_id_scan')),
    sa.PrimaryKeyConstraint('flag_id', name=op.f('pk_flag'))
    )
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flag_facility_id'), ['facility_id'], unique=False)
        batch_op.create_index('ix_flag_rank', ['status', 'rank_score'], unique=False)

    op.create_table('flag_hit',
    sa.Column('flag_id', sa.String(length=40), nullable=False),
    sa.Column('detector', sa.String(length=40), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.flag_id'], name=op.f('fk_flag_hit_flag_id_flag')),
    sa.ForeignKeyConstraint(['scan_id'], ['scan.id'], name=op.f('fk_flag_hit_scan_id_scan')),
    sa.PrimaryKeyConstraint('flag_id', 'detector', name=op.f('pk_flag_hit'))
    )
    op.create_table('verdict',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('flag_id', sa.String(length=40), nullable=False),
    sa.Column('verdict', sa.String(length=12), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("verdict IN ('confirmed', 'dismissed', 'escalated')", name=op.f('ck_verdict_verdict')),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.flag_id'], name=op.f('fk_verdict_flag_id_flag')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verdict'))
    )
    with op.batch_alter_table('verdict', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verdict_flag_id'), ['flag_id'], unique=False)

    op.create_table('flag_evidence',
    sa.Column('flag_id', sa.String(length=40), nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.entry_id'], name=op.f('fk_flag_evidence_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.flag_id'], name=op.f('fk_flag_evidence_flag_id_flag')),
    sa.PrimaryKeyConstraint('flag_id', 'entry_id', name=op.f('pk_flag_evidence'))
    )
    with op.batch_alter_table('flag_evidence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flag_evidence_entry_id'), ['entry_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('flag_evidence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flag_evidence_entry_id'))

    op.drop_table('flag_evidence')
    with op.batch_alter_table('verdict', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verdict_flag_id'))

    op.drop_table('verdict')
    op.drop_table('flag_hit')
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.drop_index('ix_flag_rank')
        batch_op.drop_index(batch_op.f('ix_flag_facility_id'))

    op.drop_table('flag')
    op.drop_table('scan')

