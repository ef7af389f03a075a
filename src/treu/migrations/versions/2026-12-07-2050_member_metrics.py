"""Member metrics kept incrementally: ``member_metrics`` (one row of purchase aggregates
per member), ``member_metric_values`` (categories, tags and engagement types of the last
365 days) and ``member_metrics_state`` (per programme: the ``now`` of the last update and
the event id below which everything is folded in). Filled by the first segment refresh
(a full rebuild); see ``treu.insights.member_metrics``.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 20:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | Sequence[str] | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_metrics",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("first_purchase_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_purchase_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("purchases_90", sa.Integer(), nullable=False),
        sa.Column("purchases_365", sa.Integer(), nullable=False),
        sa.Column("spend_90", sa.BigInteger(), nullable=False),
        sa.Column("spend_365", sa.BigInteger(), nullable=False),
        sa.Column("returns_365", sa.Integer(), nullable=False),
        sa.Column("engagements_90", sa.Integer(), nullable=False),
        sa.Column("engagements_365", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_metrics")),
    )
    op.create_index("ix_member_metrics_programme", "member_metrics", ["programme_id"])
    op.create_table(
        "member_metric_values",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "kind", "value", name=op.f("pk_member_metric_values")),
    )
    op.create_index("ix_member_metric_values_programme", "member_metric_values", ["programme_id"])
    op.create_table(
        "member_metrics_state",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("computed_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events_from", sa.Uuid(), nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("definition", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_member_metrics_state_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("programme_id", name=op.f("pk_member_metrics_state")),
    )


def downgrade() -> None:
    op.drop_table("member_metrics_state")
    op.drop_index("ix_member_metric_values_programme", table_name="member_metric_values")
    op.drop_table("member_metric_values")
    op.drop_index("ix_member_metrics_programme", table_name="member_metrics")
    op.drop_table("member_metrics")
