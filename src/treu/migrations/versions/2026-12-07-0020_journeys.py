"""Journeys: per programme and kind settings, exposures (treated or held out, per
occasion), a programme's marketing quiet hours.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-07 00:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=True),
        sa.Column("holdout_pct", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "holdout_pct >= 0 AND holdout_pct <= 100", name=op.f("ck_journeys_holdout_pct")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_journeys_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journeys")),
        sa.UniqueConstraint("programme_id", "kind", name=op.f("uq_journeys_programme_id_kind")),
    )
    op.create_table(
        "journey_exposures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("occasion", sa.String(length=100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_exposures")),
        sa.UniqueConstraint(
            "journey_id",
            "member_id",
            "occasion",
            "step",
            name=op.f("uq_journey_exposures_journey_id_member_id_occasion_step"),
        ),
    )
    op.create_index("ix_journey_exposures_member", "journey_exposures", ["member_id", "at"])
    op.create_index("ix_journey_exposures_journey_at", "journey_exposures", ["journey_id", "at"])
    op.create_table(
        "journey_programmes",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=False),
        sa.Column("quiet_end", sa.String(length=5), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_journey_programmes_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("programme_id", name=op.f("pk_journey_programmes")),
    )


def downgrade() -> None:
    op.drop_table("journey_programmes")
    op.drop_index("ix_journey_exposures_journey_at", table_name="journey_exposures")
    op.drop_index("ix_journey_exposures_member", table_name="journey_exposures")
    op.drop_table("journey_exposures")
    op.drop_table("journeys")
