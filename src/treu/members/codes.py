"""One-time sign-in codes of the member portal, sent by e-mail.

A member gives their e-mail address; ``request`` makes a six-digit code valid for
``VALID_FOR`` and records ``member.sign_in_code`` in the outbox, which the e-mail channel
turns into a transactional message (it goes whatever the member's consents say: they
asked for it). ``verify`` accepts the code at most ``MAX_TRIES`` times wrong; then, after
expiry or once used, only a new code helps. A new code replaces the old one.

What is stored: an HMAC of the code under the server's key (``Settings.signing_key``),
never the code. The code is *derived* from a random nonce with that key (``derive``), and
the outbox row carries only the nonce, so the code exists in plain text only in the
rendered e-mail. Six digits are a small space, which is why the key matters: without it a
copy of the table does not reveal a code by trying all million.

Rate limit per member: one code per ``MIN_GAP``, ``PER_WINDOW`` codes per ``WINDOW``.
With ``MAX_TRIES`` that bounds guessing to 25 tries an hour, a chance of 1 in 40,000.

No account enumeration: ``request`` answers None both for an address that is no member's
and for a refused request, and ``verify`` answers None for every failure; the page says
the same thing in each case. A refusal is an answer rather than an exception because the
try it counted must be committed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.kit.time import utc_now
from treu.members.models import Member, MemberStatus, SignInCode
from treu.outbox.events import SignInCodeSent
from treu.outbox.service import OutboxService
from treu.programmes.models import Programme

log = logging.getLogger("treu.members")

DIGITS = 6
VALID_FOR = timedelta(minutes=10)
MAX_TRIES = 5
MIN_GAP = timedelta(minutes=1)
WINDOW = timedelta(hours=1)
PER_WINDOW = 5

_outbox = OutboxService()


def derive(key: bytes, member_id: uuid.UUID, nonce: str) -> str:
    """The code of ``nonce``: what the e-mail says and the member types."""
    digest = hmac.new(key, f"sign-in:{member_id}:{nonce}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**DIGITS:0{DIGITS}d}"


def _hash(key: bytes, member_id: uuid.UUID, code: str) -> str:
    return hmac.new(key, f"sign-in-code:{member_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _clean(code: str) -> str:
    """What people type: spaces and dashes ("123 456") are left out."""
    return "".join(ch for ch in code if ch not in " -\u00a0\t")


@dataclass(frozen=True, slots=True)
class Issued:
    member_id: uuid.UUID
    code: str
    expires_at: datetime


class SignInCodes:
    def programme_for(self, session: Session, slug: str | None) -> Programme | None:
        """The programme a portal visitor signs in to: ``slug`` (the retailer's link
        says ``?programme=<slug>``), else the only programme, else None."""
        if slug:
            return session.scalar(select(Programme).where(Programme.slug == slug))
        found = list(session.scalars(select(Programme).order_by(Programme.id).limit(2)))
        return found[0] if len(found) == 1 else None

    def _member(self, session: Session, programme_id: uuid.UUID, email: str) -> Member | None:
        address = email.strip().lower()
        if not address or len(address) > 320:
            return None
        member = session.scalar(
            select(Member)
            .where(Member.programme_id == programme_id, Member.email == address)
            .with_for_update()
        )
        if member is None or member.status != MemberStatus.active.value:
            return None
        return member

    def request(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID,
        email: str,
        key: bytes,
        now: datetime | None = None,
    ) -> Issued | None:
        """A new code for the active member of ``programme_id`` with ``email``, sent
        through the outbox; None for no such member or a refused request (rate limit)."""
        now = now or utc_now()
        member = self._member(session, programme_id, email)
        if member is None:
            return None
        row = session.get(SignInCode, member.id)
        if row is not None:
            if now < row.issued_at + MIN_GAP:
                log.info("sign-in code for member %s refused: asked again too soon", member.id)
                return None
            if now < row.window_started_at + WINDOW:
                if row.window_count >= PER_WINDOW:
                    log.info("sign-in code for member %s refused: hourly limit", member.id)
                    return None
                row.window_count += 1
            else:
                row.window_started_at, row.window_count = now, 1
        else:
            row = SignInCode(member_id=member.id, window_started_at=now, window_count=1)
            session.add(row)
        nonce = secrets.token_urlsafe(16)
        code = derive(key, member.id, nonce)
        row.code_hash = _hash(key, member.id, code)
        row.issued_at = now
        row.expires_at = now + VALID_FOR
        row.tries = 0
        session.flush()
        _outbox.record(
            session,
            SignInCodeSent(
                programme_id=member.programme_id,
                member_id=member.id,
                occurred_at=now,
                nonce=nonce,
                expires_at=row.expires_at,
            ),
        )
        return Issued(member.id, code, row.expires_at)

    def verify(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID,
        email: str,
        code: str,
        key: bytes,
        now: datetime | None = None,
    ) -> Member | None:
        """The member whose current code ``code`` is, using the code up; else None (and
        a wrong code counts a try)."""
        now = now or utc_now()
        member = self._member(session, programme_id, email)
        if member is None:
            return None
        row = session.get(SignInCode, member.id)
        if row is None or row.code_hash is None or now >= row.expires_at:
            return None
        if row.tries >= MAX_TRIES:
            return None
        typed = _clean(code)
        if len(typed) == DIGITS and typed.isdigit():
            if hmac.compare_digest(_hash(key, member.id, typed), row.code_hash):
                row.code_hash = None
                session.flush()
                return member
        row.tries += 1
        session.flush()
        return None


codes = SignInCodes()
