"""Insights: scores per member, dynamic segments with their members and history, and
the registry of trained models; a journey's segment audience (``journeys.segments``).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _bigint_id() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "member_scores",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=True),
        sa.Column("frequency_365", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("spend_365_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rfm_r", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_f", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_m", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_segment", sa.String(length=32), nullable=True),
        sa.Column("clv_365_minor", sa.BigInteger(), nullable=True),
        sa.Column("p_alive", sa.Float(), nullable=True),
        sa.Column("churn_risk", sa.Float(), nullable=True),
        sa.Column("persona", sa.String(length=64), nullable=True),
        sa.CheckConstraint("rfm_r BETWEEN 1 AND 5", name=op.f("ck_member_scores_rfm_r")),
        sa.CheckConstraint("rfm_f BETWEEN 1 AND 5", name=op.f("ck_member_scores_rfm_f")),
        sa.CheckConstraint("rfm_m BETWEEN 1 AND 5", name=op.f("ck_member_scores_rfm_m")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_scores_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_member_scores_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_scores")),
    )
    op.create_index("ix_member_scores_programme", "member_scores", ["programme_id"])

    op.create_table(
        "segments",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("member_count", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_segments_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("programme_id", "slug", name=op.f("uq_segments_programme_id_slug")),
    )

    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_segment_members_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_members_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("segment_id", "member_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_member", "segment_members", ["member_id"])

    op.create_table(
        "segment_changes",
        sa.Column("id", _bigint_id(), autoincrement=True, nullable=False),
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("change", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_changes_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_changes")),
    )
    op.create_index("ix_segment_changes_segment_at", "segment_changes", ["segment_id", "at"])

    op.create_table(
        "insight_models",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_insight_models_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insight_models")),
        sa.UniqueConstraint(
            "programme_id",
            "kind",
            "version",
            name=op.f("uq_insight_models_programme_id_kind_version"),
        ),
    )

    # A journey's segment audience (treu.journeys): empty reaches everybody, as before.
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(
            sa.Column("segments", _json(), server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("segments")
    op.drop_table("insight_models")
    op.drop_index("ix_segment_changes_segment_at", table_name="segment_changes")
    op.drop_table("segment_changes")
    op.drop_index("ix_segment_members_member", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")
    op.drop_index("ix_member_scores_programme", table_name="member_scores")
    op.drop_table("member_scores")
