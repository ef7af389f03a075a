"""Check a purchase line's foreign key to its event at commit.

A large batch writes its purchase lines before it locks the members' accounts and
writes the events (``EventService._lines_first``): concurrent batches that share a
member queue on those locks until commit, and the lines were the largest write under
them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "fk_purchase_lines_event_id_events"


def _change(deferred: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # In place: re-creating the key would check every purchase line again, holding
        # a lock on the largest table for as long.
        mode = "DEFERRABLE INITIALLY DEFERRED" if deferred else "NOT DEFERRABLE"
        op.execute(f"ALTER TABLE purchase_lines ALTER CONSTRAINT {NAME} {mode}")
        return
    deferral: dict[str, Any] = {"deferrable": True, "initially": "DEFERRED"} if deferred else {}
    with op.batch_alter_table("purchase_lines") as batch:  # SQLite copies the table
        batch.drop_constraint(NAME, type_="foreignkey")
        batch.create_foreign_key(NAME, "events", ["event_id"], ["id"], **deferral)


def upgrade() -> None:
    _change(deferred=True)


def downgrade() -> None:
    _change(deferred=False)
