"""Drop the foreign keys of the rows a purchase writes: events, purchase lines, postings
and lots.

Every purchase inserts an event, its lines, an ``earn`` posting and a lot, and
PostgreSQL checked each of their references with a look-up that also row-locks the
parent: eight checks for a 3-line purchase (event → member and programme, three lines →
event, posting → member and event, lot → posting), measured at 71 ms of the database's
187 ms CPU for a batch of 1,000 purchases. The rows are written only by the ledger
writer and the event service, in the same unit of work as (or after) the parents they
name, and the parents are never deleted: members are closed, and erasure pseudonymises
them. ``treu ledger verify`` reports any row whose parent is missing (``copies``), as it
reports copies that disagree with their parent (migration 0007).

Kept: the keys of accounts, lot allocations and everything outside the purchase path.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referenced table, options of the key as it was)
KEYS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("events", "programme_id", "programmes", {}),
    ("events", "member_id", "members", {}),
    ("events", "original_event_id", "events", {}),
    ("purchase_lines", "event_id", "events", {"deferrable": True, "initially": "DEFERRED"}),
    ("postings", "member_id", "members", {}),
    ("postings", "event_id", "events", {}),
    ("lots", "posting_id", "postings", {}),
]


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, referred, _ in KEYS:  # in place: nothing is copied or checked
            op.drop_constraint(_name(table, column, referred), table, type_="foreignkey")
        return
    for table in dict.fromkeys(t for t, _, _, _ in KEYS):
        with op.batch_alter_table(table) as batch:  # SQLite copies the table
            for t, column, referred, _ in KEYS:
                if t == table:
                    batch.drop_constraint(_name(t, column, referred), type_="foreignkey")


def downgrade() -> None:
    for table in dict.fromkeys(t for t, _, _, _ in KEYS):
        with op.batch_alter_table(table) as batch:
            for t, column, referred, options in KEYS:
                if t == table:
                    batch.create_foreign_key(
                        _name(t, column, referred), referred, [column], ["id"], **options
                    )
