"""Manual goodwill credits and corrections (``POST /v1/members/{id}/adjustments``).

An adjustment is stored under its idempotency key in ``ledger_adjustments``, so a
retried request never credits twice; the posting names who made it and why, and the
audit log records it.

The ledger sits below the members package (import-linter's layers), so the member
arrives as an ``AccountHolder``: ``treu.members.models.Member`` is one."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.errors import IdempotencyConflict, MemberClosed
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.ledger.models import LedgerAdjustment, PostingKind
from treu.ledger.service import ledger
from treu.programmes.service import programmes

CLOSED = "closed"
"""``MemberStatus.closed`` (``treu.members.models``): a closed member's points stay as
they are."""


class AccountHolder(Protocol):
    """What an adjustment reads of the member."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def programme_id(self) -> uuid.UUID: ...

    @property
    def status(self) -> str: ...


@dataclass
class Adjustment:
    points: int
    reason: str
    key: str | None = None
    allow_negative: bool = False


class AdjustmentService:
    """Manual goodwill credits and corrections, audit-logged with who and why."""

    def adjust(
        self,
        session: Session,
        *,
        member: AccountHolder,
        adjustment: Adjustment,
        actor: str,
        now: datetime | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Post ``adjustment`` to the member's account: 201 and the answer; or, for a
        key used before with the same request, 200 and the answer given then."""
        now = now or utc_now()
        payload = {
            "member_id": str(member.id),
            "points": adjustment.points,
            "reason": adjustment.reason,
            "allow_negative": adjustment.allow_negative,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key = adjustment.key or f"adjustment:{new_id()}"
        if member.status == CLOSED:
            raise MemberClosed(f"member {member.id} is closed")
        writer = ledger.writer(session, now=now)
        account = writer.account(member.id)  # locks first: a concurrent retry waits here
        existing = session.execute(
            select(LedgerAdjustment.payload_hash, LedgerAdjustment.result).where(
                LedgerAdjustment.programme_id == member.programme_id,
                LedgerAdjustment.key == key,
            )
        ).one_or_none()
        if existing is not None:
            if existing.payload_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was already used for another request"
                )
            return 200, dict(existing.result)
        programme = programmes.get(session, member.programme_id)
        adjustment_id = new_id()
        details = {"template": "adjust", "params": {"reason": adjustment.reason}}
        if adjustment.points > 0:
            posting = writer.earn(
                account,
                programme=programme,
                points=adjustment.points,
                earned_at=now,
                details=details,
                event_id=adjustment_id,
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
                event_id=adjustment_id,
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
        session.execute(
            insert(LedgerAdjustment).values(
                id=adjustment_id,
                programme_id=member.programme_id,
                member_id=member.id,
                key=key,
                payload_hash=digest,
                points=adjustment.points,
                reason=adjustment.reason,
                actor=actor,
                result=result,
                created_at=now,
            )
        )
        return 201, result


adjustments = AdjustmentService()
