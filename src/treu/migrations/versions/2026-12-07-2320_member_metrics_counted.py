"""Kept member metrics that a window boundary can shift: ``member_metric_values.n``
counts the lines or events that carry a value (a value leaving the 365 days takes one
off instead of the member being aggregated again), channels become values of kind
``channel`` (a bit set cannot be taken from), and ``member_metrics_folded`` lists the
recent events already counted (new events are added to the kept rows exactly once). The
kept rows are derived: they are emptied here, and the next segment refresh rebuilds
them.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 23:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | Sequence[str] | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _forget() -> None:
    for table in ("member_metric_values", "member_metrics", "member_metrics_state"):
        op.execute(sa.text(f"DELETE FROM {table}"))


def upgrade() -> None:
    _forget()
    with op.batch_alter_table("member_metric_values") as batch:
        batch.add_column(sa.Column("n", sa.Integer(), nullable=False))
    with op.batch_alter_table("member_metrics") as batch:
        batch.drop_column("channels")
    op.create_table(
        "member_metrics_folded",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("programme_id", "event_id", name=op.f("pk_member_metrics_folded")),
    )


def downgrade() -> None:
    _forget()
    op.drop_table("member_metrics_folded")
    with op.batch_alter_table("member_metrics") as batch:
        batch.add_column(sa.Column("channels", sa.Integer(), nullable=False))
    with op.batch_alter_table("member_metric_values") as batch:
        batch.drop_column("n")
