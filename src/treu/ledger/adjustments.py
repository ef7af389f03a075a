"""Manual goodwill credits and corrections (``POST /v1/members/{id}/adjustments``).

An adjustment is stored under its idempotency key in ``ledger_adjustments``, so a
retried request never credits twice; the posting names who made it and why, and the
audit log records it. It answers a ``Keyed[AdjustmentResult]``, as the rewards package
answers its keyed requests; a replay reads the stored JSON back into the same type.

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
from treu.kit.results import Keyed
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


POSTING_KEYS = (
    "id",
    "kind",
    "points",
    "explanation",
    "rule",
    "correlation_id",
    "created_at",
    "reason",
    "actor",
)
"""The order of a posting's keys in the first answer (``PostingRecord.public()``, then who
and why). PostgreSQL's ``jsonb`` keeps keys in an order of its own, so a replay puts
them back in this one: the same document, and the same bytes, as the first time."""


@dataclass(frozen=True, slots=True)
class AdjustedBalance:
    available: int
    pending: int


@dataclass(frozen=True, slots=True)
class AdjustmentResult:
    """What an adjustment answers (``AdjustmentOut`` in the API); ``public()`` is that
    JSON, stored in ``ledger_adjustments.result`` and read back by ``from_public``."""

    member_id: uuid.UUID
    posting: dict[str, Any]
    """The ledger's public posting (``PostingRecord.public()``) with ``reason`` and
    ``actor``: the shape every answer that shows a posting uses, kept as that JSON."""
    balance: AdjustedBalance
    """The member's balance after the adjustment."""

    def public(self) -> dict[str, Any]:
        return {
            "member_id": str(self.member_id),
            "posting": dict(self.posting),
            "balance": {"available": self.balance.available, "pending": self.balance.pending},
        }

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> AdjustmentResult:
        balance, stored = data["balance"], data["posting"]
        posting = {key: stored[key] for key in POSTING_KEYS if key in stored}
        posting.update(stored)  # keys not listed above, if the ledger ever adds one
        return cls(
            uuid.UUID(data["member_id"]),
            posting,
            AdjustedBalance(balance["available"], balance["pending"]),
        )


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
    ) -> Keyed[AdjustmentResult]:
        """Post ``adjustment`` to the member's account; for a key used before with the
        same request, the answer given then (``replayed``)."""
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
            return Keyed(AdjustmentResult.from_public(existing.result), replayed=True)
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
        result = AdjustmentResult(
            member.id,
            posting.public() | {"reason": adjustment.reason, "actor": actor},
            AdjustedBalance(account.available, account.pending),
        )
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
                result=result.public(),
                created_at=now,
            )
        )
        return Keyed(result)


adjustments = AdjustmentService()
