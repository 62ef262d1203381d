"""Security: personal API tokens expire.

- api_token.expires_at: a token is refused from then on. Tokens issued before this revision get
  90 days from the upgrade.

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


def upgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    token = sa.table('api_token', sa.column('expires_at', UTCDateTime()))
    op.execute(token.update().values(expires_at=datetime.now(timezone.utc) + timedelta(days=90)))
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
