"""Key the per-member limit counters by member first: (member_id, rule_id, period).

The checkout and ingestion read a member's counters of the programme's limited rules
(``member_id = ANY(...) AND rule_id = ANY(...) AND period = ANY(...)``). Keyed by rule
first, PostgreSQL's plan for that statement had to start from every counter of those
rules: planning it took about 1 ms per checkout, and a generic plan scanned the whole
table. Member first, the look-up starts from the member's few rows, as every hot-path
read of member-owned rows should (the member is also the distribution key later).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(*columns: str) -> None:
    with op.batch_alter_table("rule_usage") as batch:  # SQLite copies the table
        batch.drop_constraint("pk_rule_usage", type_="primary")
        batch.create_primary_key("pk_rule_usage", list(columns))


def upgrade() -> None:
    _key("member_id", "rule_id", "period")


def downgrade() -> None:
    _key("rule_id", "member_id", "period")
