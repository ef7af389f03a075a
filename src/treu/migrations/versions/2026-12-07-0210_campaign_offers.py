"""Targeted offers: when an offer had reached its audience, and the coupon each exposure
got.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("given_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaign_exposures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("coupon_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_exposures", schema=None) as batch_op:
        batch_op.drop_column("coupon_id")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("given_at")
