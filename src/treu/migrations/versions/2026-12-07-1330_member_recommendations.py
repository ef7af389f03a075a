"""Member recommendations: each member's products, best first, as the nightly training
computed them (``treu insights train``, step ``recommend``). No foreign keys: derived rows
replaced whole each night, and per-row key checks tripled the write's time (see
``treu.segments.models.MemberRecommendation``).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_recommendations",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rank >= 1", name=op.f("ck_member_recommendations_rank")),
        sa.CheckConstraint(
            "source IN ('again', 'similar', 'popular')",
            name=op.f("ck_member_recommendations_source"),
        ),
        sa.PrimaryKeyConstraint("member_id", "rank", name=op.f("pk_member_recommendations")),
    )
    op.create_index(
        "ix_member_recommendations_programme", "member_recommendations", ["programme_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_member_recommendations_programme", table_name="member_recommendations")
    op.drop_table("member_recommendations")
