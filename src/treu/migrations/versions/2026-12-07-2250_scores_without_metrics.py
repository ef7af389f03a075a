"""``member_scores`` without the metrics RFM is computed from (``recency_days``,
``frequency_365``, ``spend_365_minor``): they are kept per member in ``member_metrics``
(migration 0029) by the same refresh, and ``GET /v1/members/{id}/scores`` reads them
from there (recency counted to the moment of the request). RFM now writes a score row
only when one of its four values changes; the stored recency changed every day for
every member, so every refresh rewrote every row.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 22:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | Sequence[str] | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("member_scores") as batch:
        batch.drop_column("recency_days")
        batch.drop_column("frequency_365")
        batch.drop_column("spend_365_minor")


def downgrade() -> None:
    # Restored empty: the next segment refresh's RFM does not fill them (the metrics
    # are in member_metrics); an older release's refresh does.
    with op.batch_alter_table("member_scores") as batch:
        batch.add_column(sa.Column("recency_days", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("frequency_365", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column(
                "spend_365_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            )
        )
