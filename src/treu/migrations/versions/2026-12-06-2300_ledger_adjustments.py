"""Manual adjustments get a table of their own, ``ledger_adjustments``, owned by the ledger.

An adjustment was stored as a row of ``events`` (type ``adjustment``) for its idempotency
key, so its service lived in the events package; the ledger sits below that package and
could not write the row itself. The rows move with their ids: the postings and lots of
an adjustment keep pointing at it through ``event_id``. ``points``, ``reason`` and
``actor`` come from the event's data and the adjustment's posting; ``created_at`` is the
event's ``received_at``. The downgrade moves them back.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CHUNK = 1_000

events = sa.table(
    "events",
    sa.column("id", sa.Uuid()),
    sa.column("programme_id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("type", sa.String()),
    sa.column("member_id", sa.Uuid()),
    sa.column("payload_hash", sa.String()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("received_at", sa.DateTime(timezone=True)),
    sa.column("data", JSON),
    sa.column("result", JSON),
)
postings = sa.table(
    "postings",
    sa.column("id", sa.Uuid()),
    sa.column("event_id", sa.Uuid()),
    sa.column("member_id", sa.Uuid()),
    sa.column("points", sa.BigInteger()),
    sa.column("reason", sa.Text()),
    sa.column("actor", sa.String()),
)
adjustments = sa.table(
    "ledger_adjustments",
    sa.column("id", sa.Uuid()),
    sa.column("programme_id", sa.Uuid()),
    sa.column("member_id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("payload_hash", sa.String()),
    sa.column("points", sa.BigInteger()),
    sa.column("reason", sa.Text()),
    sa.column("actor", sa.String()),
    sa.column("result", JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "ledger_adjustments",
        sa.Column("programme_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_adjustments")),
        sa.UniqueConstraint(
            "programme_id", "key", name=op.f("uq_ledger_adjustments_programme_id_key")
        ),
    )
    connection = op.get_bind()
    found = connection.execute(
        sa.select(
            events.c.id,
            events.c.programme_id,
            events.c.member_id,
            events.c.key,
            events.c.payload_hash,
            events.c.received_at,
            events.c.data,
            events.c.result,
        )
        .where(events.c.type == "adjustment")
        .order_by(events.c.id)
    ).all()
    for start in range(0, len(found), CHUNK):
        chunk = found[start : start + CHUNK]
        ids = [row.id for row in chunk]
        # An adjustment made one posting; the first one, should there be more.
        posted: dict[Any, Any] = {}
        for row in connection.execute(
            sa.select(
                postings.c.event_id,
                postings.c.member_id,
                postings.c.points,
                postings.c.reason,
                postings.c.actor,
            )
            .where(postings.c.event_id.in_(ids))
            .order_by(postings.c.id)
        ):
            posted.setdefault(row.event_id, row)
        op.bulk_insert(
            adjustments,
            [_moved(row, posted.get(row.id)) for row in chunk],
            multiinsert=True,
        )
        connection.execute(sa.delete(events).where(events.c.id.in_(ids)))


def _moved(event: Any, posting: Any) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    points = data.get("points")
    if not isinstance(points, int):
        points = posting.points if posting is not None else 0
    return {
        "id": event.id,
        "programme_id": event.programme_id,
        "member_id": event.member_id if event.member_id is not None else posting.member_id,
        "key": event.key,
        "payload_hash": event.payload_hash,
        "points": points,
        "reason": (posting.reason if posting is not None else None) or "",
        "actor": (posting.actor if posting is not None else None) or "",
        "result": event.result or {},
        "created_at": event.received_at,
    }


def downgrade() -> None:
    connection = op.get_bind()
    found = connection.execute(
        sa.select(
            adjustments.c.id,
            adjustments.c.programme_id,
            adjustments.c.member_id,
            adjustments.c.key,
            adjustments.c.payload_hash,
            adjustments.c.points,
            adjustments.c.result,
            adjustments.c.created_at,
        ).order_by(adjustments.c.id)
    ).all()
    for start in range(0, len(found), CHUNK):
        op.bulk_insert(
            events,
            [
                {
                    "id": row.id,
                    "programme_id": row.programme_id,
                    "key": row.key,
                    "type": "adjustment",
                    "member_id": row.member_id,
                    "payload_hash": row.payload_hash,
                    "occurred_at": row.created_at,
                    "received_at": row.created_at,
                    "data": {"points": row.points},
                    "result": row.result,
                }
                for row in found[start : start + CHUNK]
            ],
            multiinsert=True,
        )
    op.drop_table("ledger_adjustments")
