"""Manual goodwill credits and corrections (``POST /v1/members/{id}/adjustments``).

An adjustment is stored like an event (type ``adjustment``) under its idempotency key,
so a retried request never credits twice; the posting names who made it and why, and
the audit log records it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.events.errors import IdempotencyConflict
from treu.events.models import Event
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.ledger.models import PostingKind
from treu.ledger.service import ledger
from treu.members.errors import MemberClosed
from treu.members.models import Member, MemberStatus
from treu.programmes.service import programmes


@dataclass
class Adjustment:
    points: int
    reason: str
    key: str | None = None
    allow_negative: bool = False


class AdjustmentService:
    """Manual goodwill credits and corrections, audit-logged with who and why.

    An adjustment with an idempotency key is stored like an event (type ``adjustment``),
    so retrying the same request never credits twice."""

    def adjust(
        self,
        session: Session,
        *,
        member: Member,
        adjustment: Adjustment,
        actor: str,
        now: datetime | None = None,
    ) -> tuple[int, dict[str, Any]]:

        now = now or utc_now()
        payload = {
            "member_id": str(member.id),
            "points": adjustment.points,
            "reason": adjustment.reason,
            "allow_negative": adjustment.allow_negative,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = adjustment.key or f"adjustment:{new_id()}"
        if member.status == MemberStatus.closed.value:
            raise MemberClosed(f"member {member.id} is closed")
        writer = ledger.writer(session, now=now)
        account = writer.account(member.id)  # locks first: a concurrent retry waits here
        existing = session.execute(
            select(Event.payload_hash, Event.result).where(
                Event.programme_id == member.programme_id, Event.key == key
            )
        ).one_or_none()
        if existing is not None:
            if existing.payload_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was already used for another request"
                )
            return 200, dict(existing.result)
        programme = programmes.get(session, member.programme_id)
        event_uuid = new_id()
        session.execute(
            insert(Event).values(
                id=event_uuid,
                programme_id=member.programme_id,
                key=key,
                type="adjustment",
                member_id=member.id,
                payload_hash=digest,
                occurred_at=now,
                received_at=now,
                data={"points": adjustment.points},
                result={},
            )
        )
        details = {"template": "adjust", "params": {"reason": adjustment.reason}}
        if adjustment.points > 0:
            posting = writer.earn(
                account,
                programme=programme,
                points=adjustment.points,
                earned_at=now,
                details=details,
                event_id=event_uuid,
                actor=actor,
                reason=adjustment.reason,
                kind=PostingKind.adjust,
                pending=False,
            )
        else:
            posting = writer.spend(
                account,
                points=-adjustment.points,
                kind=PostingKind.adjust,
                details=details,
                event_id=event_uuid,
                actor=actor,
                reason=adjustment.reason,
                allow_negative=adjustment.allow_negative,
            )
        writer.flush()
        audit.record(
            session,
            actor=actor,
            action="ledger.adjust",
            subject_type="member",
            subject_id=str(member.id),
            programme_id=member.programme_id,
            data={"points": adjustment.points, "reason": adjustment.reason, "key": key},
        )
        result = {
            "member_id": str(member.id),
            "posting": posting.public() | {"reason": adjustment.reason, "actor": actor},
            "balance": {"available": account.available, "pending": account.pending},
        }
        session.execute(update(Event).where(Event.id == event_uuid).values(result=result))
        return 201, result


adjustments = AdjustmentService()
