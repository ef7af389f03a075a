"""``segment_members`` and ``segment_changes`` without foreign keys. Both are derived:
only the segment refresh writes them, from the programme's active members, while it
holds the segments' rows; deleting a segment deletes its rows first. Each foreign key
checked every row a refresh writes: inserting 20,000 memberships took 375 ms with the
two keys and 106 ms without (PostgreSQL, 200,000 members).

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-08 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0032"
down_revision: str | Sequence[str] | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (
    ("segment_members", "fk_segment_members_member_id_members", "members", "member_id"),
    ("segment_members", "fk_segment_members_segment_id_segments", "segments", "segment_id"),
    ("segment_changes", "fk_segment_changes_segment_id_segments", "segments", "segment_id"),
)


def upgrade() -> None:
    for table in ("segment_members", "segment_changes"):
        with op.batch_alter_table(table) as batch:
            for owner, name, _, _ in _KEYS:
                if owner == table:
                    batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in ("segment_members", "segment_changes"):
        with op.batch_alter_table(table) as batch:
            for owner, name, referred, column in _KEYS:
                if owner == table:
                    batch.create_foreign_key(name, referred, [column], ["id"])
