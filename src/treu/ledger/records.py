"""What the ledger hands around in memory: an account's balances and open lots as the
writer holds them while the account is locked, and a posting as written (for answers).

Plain dataclasses, apart from the writer so that readers (``treu.ledger.service``,
answers that show a posting) need not import the writer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from treu.kit.time import iso
from treu.ledger.models import Lot


@dataclass
class LotView:
    id: uuid.UUID
    member_id: uuid.UUID
    state: str
    amount: int
    remaining: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    event_id: uuid.UUID | None
    dirty: bool = False

    def fifo_key(self) -> tuple[int, datetime, datetime, uuid.UUID]:
        """Spend the points that expire first; lots that never expire go last."""
        never = self.expires_at is None
        return (1 if never else 0, self.expires_at or self.earned_at, self.earned_at, self.id)


LOT_VIEW = (
    Lot.id,
    Lot.member_id,
    Lot.state,
    Lot.amount,
    Lot.remaining,
    Lot.earned_at,
    Lot.available_at,
    Lot.expires_at,
    Lot.event_id,
)
"""The columns of ``LotView``, in its field order."""


@dataclass
class AccountState:
    member_id: uuid.UUID
    programme_id: uuid.UUID
    available: int
    pending: int
    lifetime_earned: int
    open_lots: list[LotView] | None = None
    """Lots with points left, loaded only when an operation needs them."""
    dirty: bool = False

    def brief(self) -> dict[str, int]:
        """The balance as an answer shows it after a change."""
        return {"available": self.available, "pending": self.pending}


@dataclass
class PostingRecord:
    id: uuid.UUID
    member_id: uuid.UUID
    kind: str
    points: int
    correlation_id: uuid.UUID
    event_id: uuid.UUID | None
    explanation: str
    details: dict[str, Any]
    created_at: datetime
    actor: str | None = None
    reason: str | None = None
    expired: int = 0
    """``refund`` only: of the refunded points, those that went back to lots already
    past their expiry and expired at once (``expire`` postings with the same
    correlation id)."""

    def public(self) -> dict[str, Any]:
        """The posting in an answer (an event's, a redemption's); ``rule`` only where a
        rule made it, as these answers leave out what is null."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "kind": self.kind,
            "points": self.points,
            "explanation": self.explanation,
        }
        rule = rule_of(self.details)
        if rule is not None:
            out["rule"] = rule
        out["correlation_id"] = str(self.correlation_id)
        out["created_at"] = iso(self.created_at)
        return out


def rule_of(details: dict[str, Any]) -> dict[str, Any] | None:
    """The rule that produced a posting, as its stored explanation names it: an earning
    rule's id, ``base`` (the programme's rate) or ``tier.<code>`` (a tier's multiplier),
    with the version; None for postings no rule made (reversals, redemptions, expiry)."""
    if details.get("rule_id") is not None:
        return {"id": str(details["rule_id"]), "version": details.get("rule_version")}
    rule = details.get("rule")
    if isinstance(rule, dict) and rule.get("id") is not None:
        return {"id": str(rule["id"]), "version": rule.get("version")}
    return None
