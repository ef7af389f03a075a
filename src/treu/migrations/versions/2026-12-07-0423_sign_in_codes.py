"""The member portal's sign-in codes (one row per member, only a hash of the code).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 04:23:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_codes",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tries", sa.BigInteger(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_sign_in_codes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_sign_in_codes")),
    )


def downgrade() -> None:
    op.drop_table("sign_in_codes")
