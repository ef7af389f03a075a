"""Consents: who may be contacted over which channel, and the signed unsubscribe links.

The rules (docs/email.md):

* **Transactional** messages (welcome, expiry notice, coupon, upgrade) go to a member
  who has not withdrawn consent to the channel — no record counts as not withdrawn —
  and only while the programme allows transactional e-mail (``ProgrammeMessaging``).
* **Marketing** messages need consent that was granted and not withdrawn since.

Consent is kept as history (``Consent`` rows, appended; the latest per channel is the
state), so that what a member agreed to, when, where and to which wording can be shown.

**Unsubscribe links** name a member and a channel, signed with ``TREU_SECRET_KEY``
(HMAC-SHA256, truncated to 128 bits): anyone holding the link may withdraw that one
consent and nothing else, without logging in (RFC 8058 one-click). Links do not expire:
an old newsletter's link must still work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.kit.time import utc_now
from treu.members.models import Member
from treu.messaging.errors import InvalidLink
from treu.messaging.models import Consent, ConsentChannel, ProgrammeMessaging

Kind = Literal["transactional", "marketing", "requested"]
"""``requested``: the member asked for this message just now (a sign-in code); it goes
whatever their consents and the programme's e-mail switch say."""


@dataclass(frozen=True, slots=True)
class ConsentState:
    channel: str
    granted: bool
    source: str
    wording: str | None
    at: datetime

    @classmethod
    def of(cls, row: Consent) -> ConsentState:
        return cls(row.channel, row.granted, row.source, row.wording, row.at)


def may_send(kind: Kind, state: ConsentState | None) -> bool:
    """Whether a message of ``kind`` may go to a member whose consent is ``state``."""
    if kind == "marketing":
        return state is not None and state.granted
    if kind == "requested":
        return True
    return state is None or state.granted


class ConsentService:
    def record(
        self,
        session: Session,
        *,
        member: Member,
        channel: ConsentChannel | str,
        granted: bool,
        source: str,
        wording: str | None = None,
        now: datetime | None = None,
    ) -> ConsentState:
        """Append a grant or withdrawal (every statement is kept, a repeated one too:
        it may be to a newer wording)."""
        row = Consent(
            member_id=member.id,
            programme_id=member.programme_id,
            channel=ConsentChannel(channel).value,
            granted=granted,
            source=source,
            wording=wording,
            at=now or utc_now(),
        )
        session.add(row)
        session.flush()
        return ConsentState.of(row)

    def current(self, session: Session, member_id: uuid.UUID) -> dict[str, ConsentState | None]:
        """Every channel's state for one member (None: never asked)."""
        found = self.latest(session, [member_id])
        states: dict[str, ConsentState | None] = dict.fromkeys(
            (c.value for c in ConsentChannel), None
        )
        states.update(found.get(member_id, {}))
        return states

    def latest(
        self,
        session: Session,
        member_ids: Sequence[uuid.UUID],
        channel: ConsentChannel | None = None,
    ) -> dict[uuid.UUID, dict[str, ConsentState]]:
        """The latest state per member and channel (of ``channel`` only when given), for
        many members in one query."""
        if not member_ids:
            return {}
        rank = (
            func.row_number()
            .over(
                partition_by=(Consent.member_id, Consent.channel),
                order_by=(Consent.at.desc(), Consent.id.desc()),
            )
            .label("n")
        )
        ranked = select(Consent.id, rank).where(Consent.member_id.in_(member_ids))
        if channel is not None:
            ranked = ranked.where(Consent.channel == channel.value)
        newest = ranked.subquery()
        rows = session.scalars(
            select(Consent).join(newest, newest.c.id == Consent.id).where(newest.c.n == 1)
        )
        out: dict[uuid.UUID, dict[str, ConsentState]] = {}
        for row in rows:
            out.setdefault(row.member_id, {})[row.channel] = ConsentState.of(row)
        return out

    def history(
        self, session: Session, member_id: uuid.UUID, *, limit: int = 100
    ) -> list[ConsentState]:
        """Grants and withdrawals, newest first."""
        rows = session.scalars(
            select(Consent)
            .where(Consent.member_id == member_id)
            .order_by(Consent.at.desc(), Consent.id.desc())
            .limit(limit)
        )
        return [ConsentState.of(row) for row in rows]


class MessagingPolicy:
    """A programme's messaging switches (``ProgrammeMessaging``; defaults without a row)."""

    def transactional_email(
        self, session: Session, programme_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, bool]:
        wanted = set(programme_ids)
        out = dict.fromkeys(wanted, True)
        if wanted:
            rows = session.execute(
                select(
                    ProgrammeMessaging.programme_id, ProgrammeMessaging.transactional_email
                ).where(ProgrammeMessaging.programme_id.in_(wanted))
            ).all()
            out.update(dict(rows))
        return out

    def set(
        self, session: Session, programme_id: uuid.UUID, *, transactional_email: bool
    ) -> ProgrammeMessaging:
        row = session.get(ProgrammeMessaging, programme_id, with_for_update=True)
        if row is None:
            row = ProgrammeMessaging(programme_id=programme_id)
            session.add(row)
        row.transactional_email = transactional_email
        row.updated_at = utc_now()
        session.flush()
        return row


# --- unsubscribe links ---------------------------------------------------------------------

_TOKEN_VERSION = 1
_CHANNELS = tuple(ConsentChannel)
_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    member_id: uuid.UUID
    channel: ConsentChannel


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"treu-unsubscribe:" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def unsubscribe_token(key: bytes, member_id: uuid.UUID, channel: ConsentChannel) -> str:
    """A URL-safe token naming ``member_id`` and ``channel`` (46 characters)."""
    body = bytes([_TOKEN_VERSION, _CHANNELS.index(channel)]) + member_id.bytes
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode().rstrip("=")


def read_unsubscribe_token(key: bytes | None, token: str) -> Unsubscribe:
    """What a token names; ``InvalidLink`` when it was not made with ``key`` (or this
    server has no key)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink("this unsubscribe link is not valid") from None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if (
        key is None
        or len(body) != 18
        or body[0] != _TOKEN_VERSION
        or body[1] >= len(_CHANNELS)
        or not hmac.compare_digest(mac, _mac(key, body))
    ):
        raise InvalidLink("this unsubscribe link is not valid")
    return Unsubscribe(uuid.UUID(bytes=body[2:]), _CHANNELS[body[1]])


consents = ConsentService()
policy = MessagingPolicy()
