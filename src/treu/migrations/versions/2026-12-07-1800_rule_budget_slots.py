"""Rule budgets in slots: ``rule_budget_slots`` (``SLOTS`` rows per rule, each with what
was given through it and how far it may grow) instead of ``rules.budget_used``, so that a
campaign's concurrent purchases add to different rows (``treu.rules.budgets``). What a
rule gave so far moves to its slot 0, with no allowance: its first purchase shares the
budget out.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | Sequence[str] | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_budget_slots",
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("allowance", sa.BigInteger(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["rules.id"], name=op.f("fk_rule_budget_slots_rule_id_rules")
        ),
        sa.PrimaryKeyConstraint("rule_id", "slot", name=op.f("pk_rule_budget_slots")),
    )
    op.execute(
        "INSERT INTO rule_budget_slots (rule_id, slot, used, allowance, cap) "
        "SELECT id, 0, budget_used, 0, NULL FROM rules WHERE budget_used <> 0"
    )
    with op.batch_alter_table("rules") as batch:
        batch.drop_column("budget_used")


def downgrade() -> None:
    with op.batch_alter_table("rules") as batch:
        batch.add_column(
            sa.Column("budget_used", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE rules SET budget_used = (SELECT coalesce(sum(used), 0) "
        "FROM rule_budget_slots WHERE rule_budget_slots.rule_id = rules.id)"
    )
    with op.batch_alter_table("rules") as batch:  # as 0027 left it: no server default
        batch.alter_column("budget_used", server_default=None)
    op.drop_table("rule_budget_slots")
