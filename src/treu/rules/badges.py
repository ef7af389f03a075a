"""Badges awarded in one unit of work of ingestion (``BadgeBook``).

Earning rules and challenges both award badges, and a member holds each badge code once,
whoever awards it: both award through the one book of the unit of work, which knows what
the members held before and what it has awarded since. A challenge completed by the same
event as a rule that gives the same badge therefore reports no badge of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, select
from sqlalchemy.orm import Session

from treu.db.base import WriteBatch, table_of
from treu.kit.ids import new_id
from treu.outbox.events import BadgeAwarded
from treu.outbox.service import outbox
from treu.rules.models import MemberBadge
from treu.rules.spec import Badge

_HELD = select(MemberBadge.member_id, MemberBadge.code).where(
    MemberBadge.member_id.in_(bindparam("members", expanding=True, type_=Uuid()))
)


class BadgeBook:
    """The badges of one unit of work; not thread-safe."""

    def __init__(self, session: Session, *, now: datetime) -> None:
        self.session = session
        self.now = now
        self._wanted: set[uuid.UUID] = set()
        self._held: dict[uuid.UUID, set[str]] = {}
        self._rows: list[dict[str, Any]] = []
        self._events: list[BadgeAwarded] = []

    def want(self, member_id: uuid.UUID) -> None:
        """A member this unit of work may award a badge to: what the members wanted hold
        is read in one query, when the first badge is awarded (most units of work award
        none and read nothing)."""
        if member_id not in self._held:
            self._wanted.add(member_id)

    def award(
        self,
        badge: Badge,
        *,
        member_id: uuid.UUID,
        programme_id: uuid.UUID,
        event_id: uuid.UUID,
        rule_id: uuid.UUID | None = None,
        rule_version: int | None = None,
        challenge_id: uuid.UUID | None = None,
    ) -> bool:
        """Award ``badge`` unless the member holds its code; True when awarded."""
        held = self._held_by(member_id)
        if badge.code in held:
            return False
        held.add(badge.code)
        self._rows.append(
            {
                "id": new_id(),
                "member_id": member_id,
                "programme_id": programme_id,
                "code": badge.code,
                "badge": badge.model_dump(mode="json", exclude_none=True),
                "rule_id": rule_id,
                "rule_version": rule_version,
                "event_id": event_id,
                "awarded_at": self.now,
            }
        )
        self._events.append(
            BadgeAwarded(
                programme_id=programme_id,
                member_id=member_id,
                occurred_at=self.now,
                badge=badge.code,
                rule_id=None if rule_id is None else str(rule_id),
                challenge_id=challenge_id,
                event_id=event_id,
            )
        )
        return True

    def _held_by(self, member_id: uuid.UUID) -> set[str]:
        held = self._held.get(member_id)
        if held is not None:
            return held
        wanted, self._wanted = self._wanted | {member_id}, set()
        for member in wanted:
            self._held[member] = set()
        rows = self.session.connection().execute(_HELD, {"members": sorted(wanted)})
        for row in rows:
            self._held[row.member_id].add(row.code)
        return self._held[member_id]

    def flush(self, batch: WriteBatch) -> None:
        """Add the badges awarded since the last ``flush`` (rows and ``badge.awarded``
        events) to ``batch``; a book may be flushed more than once."""
        batch.insert(table_of(MemberBadge), self._rows)
        outbox.add_to(batch, self._events, now=self.now)
        self._rows, self._events = [], []


@dataclass(frozen=True, slots=True)
class EarnedBadge:
    """A badge the member holds, named in one language."""

    code: str
    name: str
    description: str | None
    icon: str
    awarded_at: datetime
    rule_id: uuid.UUID | None


def badges_of(session: Session, *, member_id: uuid.UUID, lang: str) -> list[EarnedBadge]:
    """The member's badges, oldest first, named in ``lang`` (else English): what
    ``GET /v1/members/{id}/badges`` lists and the portal shows. One query."""

    def text(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        return str(value.get(lang) or value.get("en") or "") or None

    rows = session.scalars(
        select(MemberBadge)
        .where(MemberBadge.member_id == member_id)
        .order_by(MemberBadge.awarded_at, MemberBadge.id)
    ).all()
    return [
        EarnedBadge(
            code=row.code,
            name=text(row.badge.get("name")) or row.code,
            description=text(row.badge.get("description")),
            icon=str(row.badge.get("icon", "")),
            awarded_at=row.awarded_at,
            rule_id=row.rule_id,
        )
        for row in rows
    ]
