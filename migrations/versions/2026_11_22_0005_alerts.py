"""Alerts: recipients' preferences, alert state for de-duplication, delivery history, in-app
notifications, the scheduler's job-run locks and its persistent job store.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
    )
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apscheduler_jobs_next_run_time'), ['next_run_time'], unique=False)

    op.create_table('job_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('runner', sa.String(length=200), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'ok', 'failed')", name=op.f('ck_job_run_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_run')),
    sa.UniqueConstraint('job', 'scheduled_for', name=op.f('uq_job_run_job_scheduled_for'))
    )
    op.create_table('alert_state',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_checked', sa.DateTime(timezone=True), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('active', 'resolved')", name=op.f('ck_alert_state_state')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_alert_state_facility_id_facility')),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_alert_state'))
    )
    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_state_facility_id'), ['facility_id'], unique=False)

    op.create_table('alert_preference',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=True),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('min_severity', sa.String(length=8), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel = 'in_app' OR address IS NOT NULL", name=op.f('ck_alert_preference_address')),
    sa.CheckConstraint("channel IN ('email', 'webhook', 'in_app')", name=op.f('ck_alert_preference_channel')),
    sa.CheckConstraint("language IN ('en', 'fr', 'ar')", name=op.f('ck_alert_preference_language')),
    sa.CheckConstraint("min_severity IN ('low', 'medium', 'high')", name=op.f('ck_alert_preference_min_severity')),
    sa.CheckConstraint("mode IN ('immediate', 'digest')", name=op.f('ck_alert_preference_mode')),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_alert_preference_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_preference')),
    sa.UniqueConstraint('user_id', 'channel', 'address', name=op.f('uq_alert_preference_user_id_channel_address'))
    )
    with op.batch_alter_table('alert_preference', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_preference_user_id'), ['user_id'], unique=False)

    op.create_table('notification',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=300), nullable=True),
    sa.Column('alert_key', sa.String(length=200), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_notification_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification'))
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_user_ack', ['user_id', 'acknowledged_at'], unique=False)

    op.create_table('alert_delivery',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('preference_id', sa.Integer(), nullable=True),
    sa.Column('alert_key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=300), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('email', 'webhook', 'in_app')", name=op.f('ck_alert_delivery_channel')),
    sa.CheckConstraint("severity IN ('low', 'medium', 'high')", name=op.f('ck_alert_delivery_severity')),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'held', 'digested')", name=op.f('ck_alert_delivery_status')),
    sa.ForeignKeyConstraint(['preference_id'], ['alert_preference.id'], name=op.f('fk_alert_delivery_preference_id_alert_preference')),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_alert_delivery_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_delivery'))
    )
    with op.batch_alter_table('alert_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_delivery_alert_key'), ['alert_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_delivery_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_alert_delivery_user_status', ['user_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_delivery_user_status')
        batch_op.drop_index(batch_op.f('ix_alert_delivery_created_at'))
        batch_op.drop_index(batch_op.f('ix_alert_delivery_alert_key'))

    op.drop_table('alert_delivery')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_user_ack')

    op.drop_table('notification')
    with op.batch_alter_table('alert_preference', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_preference_user_id'))

    op.drop_table('alert_preference')
    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_state_facility_id'))

    op.drop_table('alert_state')
    op.drop_table('job_run')
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apscheduler_jobs_next_run_time'))

    op.drop_table('apscheduler_jobs')

