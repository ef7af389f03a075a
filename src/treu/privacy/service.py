"""Deletion requests and the member's copy of their data.

**The copy** (``export``) is built from the schema, not from a list kept by hand: every
table with a ``member_id`` column contributes its rows of that member (postings, lots,
consents and their history, tier history, redemptions, coupons, challenge progress,
badges, deliveries, inbox, staff notes, deletion requests, …), with the member's row,
their portal sessions and the audit entries about them. A feature that adds a table
about members is in the copy without anyone remembering to add it, and nothing of
another member can be in it (every query is ``WHERE member_id = :id``). Secrets kept to
check what a client sends (token and payload hashes, CSRF tokens) are left out: they are
not information about the member and would only help someone who stole the file.

**Deletion** is a request here: recorded once (a second request finds the open one),
audit-logged, and shown to staff on the member's page. Carrying it out — erasing the
personal data in ``members`` and what else names the member — is a later feature.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

import treu.models
from treu.audit.models import AuditEvent
from treu.audit.service import audit
from treu.auth.models import WebSession
from treu.db.base import Base
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.privacy.models import DeletionRequest, DeletionStatus

treu.models.load_all()  # every table, so the copy misses none

FORMAT = "treu-member-export/1"
SECRET_COLUMNS = frozenset({"token_hash", "csrf", "payload_hash", "request_hash", "code_hash"})
"""Checks of what clients send (and of sign-in codes), not data about the member."""


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(session: Session, table: Table, *condition: Any) -> list[dict[str, Any]]:
    columns = [c for c in table.columns if c.name not in SECRET_COLUMNS]
    query = select(*columns).where(*condition).order_by(*table.primary_key.columns)
    return [
        {name: _plain(value) for name, value in row._mapping.items()}
        for row in session.execute(query)
    ]


def member_tables() -> list[Table]:
    """The tables holding rows about one member (``member_id``), by name."""
    return sorted(
        (
            table
            for table in Base.metadata.tables.values()
            if "member_id" in table.columns and table.name != Member.__tablename__
        ),
        key=lambda table: table.name,
    )


@dataclass(frozen=True, slots=True)
class Requested:
    request: DeletionRequest
    created: bool
    """False: an open request existed already and was returned."""


class PrivacyService:
    def export(
        self, session: Session, *, member_id: uuid.UUID, now: datetime | None = None
    ) -> dict[str, Any]:
        """Everything Treu holds about the member, as JSON-ready values."""
        member_table = Base.metadata.tables[Member.__tablename__]
        member = _rows(session, member_table, member_table.c.id == member_id)
        sessions = Base.metadata.tables[WebSession.__tablename__]
        audits = Base.metadata.tables[AuditEvent.__tablename__]
        return {
            "format": FORMAT,
            "exported_at": _plain(now or utc_now()),
            "member": member[0] if member else None,
            "records": {
                table.name: _rows(session, table, table.c.member_id == member_id)
                for table in member_tables()
            },
            "sessions": _rows(
                session,
                sessions,
                sessions.c.kind == "member",
                sessions.c.subject_id == member_id,
            ),
            "audit": _rows(
                session,
                audits,
                audits.c.subject_type == "member",
                audits.c.subject_id == str(member_id),
            ),
        }

    def open_request(self, session: Session, member_id: uuid.UUID) -> DeletionRequest | None:
        return session.scalars(
            select(DeletionRequest).where(
                DeletionRequest.member_id == member_id,
                DeletionRequest.status == DeletionStatus.open.value,
            )
        ).first()

    def request_deletion(
        self,
        session: Session,
        *,
        member: Member,
        source: str,
        actor: str,
        now: datetime | None = None,
    ) -> Requested:
        """Record that the member asks to be erased, once: while a request is open,
        asking again answers it. Two concurrent first requests: the unique index lets
        one in, the other's flush fails (``IntegrityError``) and, run again, finds it."""
        found = self.open_request(session, member.id)
        if found is not None:
            return Requested(found, created=False)
        row = DeletionRequest(
            member_id=member.id,
            programme_id=member.programme_id,
            requested_at=now or utc_now(),
            source=source,
            status=DeletionStatus.open.value,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="member.deletion_requested",
            subject_type="member",
            subject_id=str(member.id),
            programme_id=member.programme_id,
            data={"request_id": str(row.id), "source": source},
        )
        return Requested(row, created=True)


privacy = PrivacyService()
