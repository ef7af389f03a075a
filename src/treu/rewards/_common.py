"""Helpers shared by pay with points, the e-wallet and donations.

All three take a member's points or money for an outside request that carries an
idempotency key, so they check the member and the currency the same way and bind the key
to a hash of the request. One place keeps them from drifting apart (a replay answered
differently by one of them would be a bug).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.db.base import Base
from treu.members.errors import MemberClosed
from treu.members.models import Member, MemberStatus
from treu.programmes.models import Programme
from treu.rewards.errors import CurrencyMismatch, IdempotencyKeyReused, MemberBlocked

_Keyed = TypeVar("_Keyed", bound=Base)


def digest(payload: dict[str, Any]) -> str:
    """The hash an idempotency key is bound to: the same key with another payload is a
    conflict, not a replay."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def check_member(member: Member) -> None:
    """Closed members have no account to pay from; blocked ones (fraud, dispute) may not
    spend until an operator unblocks them."""
    if member.status == MemberStatus.closed.value:
        raise MemberClosed(f"member {member.id} is closed")
    if member.status == MemberStatus.blocked.value:
        raise MemberBlocked(f"member {member.id} is blocked")


def check_currency(programme: Programme, currency: str) -> None:
    if currency.upper() != programme.currency:
        raise CurrencyMismatch(
            f"programme {programme.slug!r} runs in {programme.currency}, not {currency}"
        )


def find_keyed(
    session: Session,
    model: type[_Keyed],
    *,
    member_id: uuid.UUID,
    key: str,
    payload_hash: str,
    shown_key: str | None = None,
) -> _Keyed | None:
    """The row a request with ``key`` made before (``model`` has ``member_id``, ``key``
    and ``payload_hash`` columns, unique per member and key), or ``None``.

    The same key with another payload raises ``idempotency_conflict`` naming
    ``shown_key``, the key as the client sent it; ``None``: ``key`` is stored with a
    namespace (``debit:<key>``, ``donation:<key>``) and the part after it is shown.
    """
    columns = cast(Any, model)
    found = session.scalars(
        select(model).where(columns.member_id == member_id, columns.key == key)
    ).one_or_none()
    if found is not None and cast(Any, found).payload_hash != payload_hash:
        shown = key.split(":", 1)[1] if shown_key is None else shown_key
        raise IdempotencyKeyReused(
            f"idempotency key {shown!r} was already used for another request"
        )
    return found
