"""Challenges and per-member progress.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "challenges",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_challenges_programme_id_programmes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
        sa.UniqueConstraint("programme_id", "code", name=op.f("uq_challenges_programme_id_code")),
    )
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.create_index(
            "ix_challenges_programme_status", ["programme_id", "status"], unique=False
        )

    op.create_table(
        "challenge_progress",
        sa.Column("challenge_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=24), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("completions", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["challenge_id"],
            ["challenges.id"],
            name=op.f("fk_challenge_progress_challenge_id_challenges"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_challenge_progress_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_challenge_progress_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint(
            "challenge_id", "member_id", "period", name=op.f("pk_challenge_progress")
        ),
    )
    with op.batch_alter_table("challenge_progress", schema=None) as batch_op:
        batch_op.create_index(
            "ix_challenge_progress_member", ["member_id", "challenge_id"], unique=False
        )

    op.create_table(
        "challenge_completions",
        sa.Column("challenge_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=24), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("posting_id", sa.Uuid(), nullable=True),
        sa.Column("badge_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["challenge_id"],
            ["challenges.id"],
            name=op.f("fk_challenge_completions_challenge_id_challenges"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_challenge_completions_event_id_events")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_challenge_completions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_challenge_completions_programme_id_programmes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenge_completions")),
        sa.UniqueConstraint(
            "challenge_id",
            "member_id",
            "period",
            name=op.f("uq_challenge_completions_challenge_id_member_id_period"),
        ),
    )
    with op.batch_alter_table("challenge_completions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_challenge_completions_member", ["member_id", "completed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("challenge_completions", schema=None) as batch_op:
        batch_op.drop_index("ix_challenge_completions_member")
    op.drop_table("challenge_completions")
    with op.batch_alter_table("challenge_progress", schema=None) as batch_op:
        batch_op.drop_index("ix_challenge_progress_member")
    op.drop_table("challenge_progress")
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_index("ix_challenges_programme_status")
    op.drop_table("challenges")
