"""Drop the foreign keys of columns that copy their parent row's programme, member or
event.

A purchase line copies its event's programme and member, a lot its posting's member,
programme and event, a posting its member's programme, a lot allocation its lot's
member: the copies exist so that those rows can be found by member, programme and time
without a join (and, later, distributed by member). Each of those rows keeps the foreign
key to its own parent (line → event, lot → posting, posting → member and event,
allocation → posting and lot), and the writer fills the copies from that parent in the
same unit of work, so the extra keys only re-checked what the parent's key had checked.
PostgreSQL checks a foreign key with one look-up per inserted row: on a 3-line purchase
those were 10 of 19 checks, and inserting the 3,000 lines of a 1,000-purchase batch took
47 ms with their three keys and 14 ms without. ``treu ledger verify`` checks that the
copies agree with their parents.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referenced table)
COPIES = [
    ("purchase_lines", "programme_id", "programmes"),
    ("purchase_lines", "member_id", "members"),
    ("postings", "programme_id", "programmes"),
    ("lots", "member_id", "members"),
    ("lots", "programme_id", "programmes"),
    ("lots", "event_id", "events"),
    ("posting_lots", "member_id", "members"),
]


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    for table in dict.fromkeys(t for t, _, _ in COPIES):
        with op.batch_alter_table(table) as batch:
            for t, column, referred in COPIES:
                if t == table:
                    batch.drop_constraint(_name(t, column, referred), type_="foreignkey")


def downgrade() -> None:
    for table in dict.fromkeys(t for t, _, _ in COPIES):
        with op.batch_alter_table(table) as batch:
            for t, column, referred in COPIES:
                if t == table:
                    batch.create_foreign_key(_name(t, column, referred), referred, [column], ["id"])
