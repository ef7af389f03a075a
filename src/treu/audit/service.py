"""The audit log: who did what to which record, written in the same transaction as the
change it records; read back newest first with filters (the console's audit page)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from treu.audit.models import AuditEvent
from treu.errors import Invalid
from treu.kit.pagination import decode_cursor, encode_cursor


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to look for; every field optional, all given ones must match.

    ``actor`` is a case-insensitive part of the actor (``staff:anna@…``, ``apikey:shop``);
    ``action`` an exact action or, ending in a dot, every action under it
    (``webhook.``); ``subject`` the subject's id, or its type (``webhook_endpoint``);
    ``since`` inclusive, ``until`` exclusive."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditService:
    def record(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        subject_type: str,
        subject_id: str,
        programme_id: uuid.UUID | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        entry = AuditEvent(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            programme_id=programme_id,
            data=data or {},
        )
        session.add(entry)
        session.flush()
        return entry

    def search(
        self,
        session: Session,
        *,
        where: AuditFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[AuditEvent], str | None]:
        """Entries newest first, keyset-paginated on the (time-ordered) id: a later page
        costs the same as the first however far back it is."""
        where = where or AuditFilter()
        query = select(AuditEvent)
        if where.actor:
            pattern = "%" + _escape(where.actor.strip().lower()) + "%"
            query = query.where(func.lower(AuditEvent.actor).like(pattern, escape="\\"))
        if where.action:
            action = where.action.strip()
            if action.endswith("."):
                query = query.where(AuditEvent.action.like(_escape(action) + "%", escape="\\"))
            else:
                query = query.where(AuditEvent.action == action)
        if where.subject:
            subject = where.subject.strip()
            query = query.where(
                or_(AuditEvent.subject_id == subject, AuditEvent.subject_type == subject)
            )
        if where.since is not None:
            query = query.where(AuditEvent.created_at >= where.since)
        if where.until is not None:
            query = query.where(AuditEvent.created_at < where.until)
        if cursor:
            query = query.where(AuditEvent.id < _before(cursor))
        rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor({"before": str(rows[-1].id)})


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _before(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(decode_cursor(cursor).get("before")))
    except ValueError as exc:
        raise Invalid("cursor is not valid; use the link to the next page", field="cursor") from exc


audit = AuditService()
