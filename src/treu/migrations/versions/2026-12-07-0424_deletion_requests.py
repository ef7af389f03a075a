"""Members' requests to be erased (the portal's privacy page; carried out later).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 04:24:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deletion_requests",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_deletion_requests_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_requests")),
    )
    op.create_index(
        "uq_deletion_requests_open",
        "deletion_requests",
        ["member_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_deletion_requests_status", "deletion_requests", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_deletion_requests_status", table_name="deletion_requests")
    op.drop_index("uq_deletion_requests_open", table_name="deletion_requests")
    op.drop_table("deletion_requests")
