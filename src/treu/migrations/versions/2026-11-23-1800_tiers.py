"""Tiers, tier settings, member tier state and history, qualifying activity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tier_metric", sa.String(length=16), server_default="points", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "tier_window",
                sa.String(length=24),
                server_default="rolling_12_months",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("tier_grace_days", sa.BigInteger(), server_default="30", nullable=False)
        )
        batch_op.add_column(
            sa.Column("tier_max_drop", sa.BigInteger(), server_default="1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("tiers_version", sa.BigInteger(), server_default="0", nullable=False)
        )

    op.create_table(
        "tiers",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("name", _json(), nullable=False),
        sa.Column("description", _json(), nullable=True),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("multiplier", sa.Numeric(precision=8, scale=4), nullable=False),
        sa.Column("flags", _json(), nullable=False),
        sa.Column("benefits", _json(), nullable=False),
        sa.Column("purchasable", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("multiplier >= 1", name=op.f("ck_tiers_multiplier_at_least_one")),
        sa.CheckConstraint("rank >= 0", name=op.f("ck_tiers_rank_non_negative")),
        sa.CheckConstraint("threshold >= 0", name=op.f("ck_tiers_threshold_non_negative")),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_tiers_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("programme_id", "code", name=op.f("uq_tiers_programme_id_code")),
        sa.UniqueConstraint("programme_id", "rank", name=op.f("uq_tiers_programme_id_rank")),
    )
    op.create_table(
        "tier_activity",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("spend_minor", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_tier_activity_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", "day", name=op.f("pk_tier_activity")),
    )
    op.create_table(
        "member_tiers",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("qualified_tier", sa.String(length=32), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("paid_tier", sa.String(length=32), nullable=True),
        sa.Column("paid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grace_started_on", sa.Date(), nullable=True),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_tiers_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_member_tiers_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_tiers")),
    )
    with op.batch_alter_table("member_tiers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_member_tiers_programme_review",
            ["programme_id", "review_on", "member_id"],
            unique=False,
        )
    op.create_table(
        "tier_history",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_tier_history_event_id_events")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_tier_history_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_tier_history_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index("ix_tier_history_member_at", ["member_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_history_member_at")
    op.drop_table("tier_history")
    with op.batch_alter_table("member_tiers", schema=None) as batch_op:
        batch_op.drop_index("ix_member_tiers_programme_review")
    op.drop_table("member_tiers")
    op.drop_table("tier_activity")
    op.drop_table("tiers")
    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.drop_column("tiers_version")
        batch_op.drop_column("tier_max_drop")
        batch_op.drop_column("tier_grace_days")
        batch_op.drop_column("tier_window")
        batch_op.drop_column("tier_metric")
