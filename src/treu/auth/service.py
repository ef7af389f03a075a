"""API keys: ``treu_`` + 12-character lookup id + 32-character secret (base62).

The fixed ``treu_`` prefix lets secret scanners (GitHub, gitleaks) recognise leaked
keys. Only the SHA-256 of the whole key is stored; the key is shown once at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.auth.errors import ApiKeyNotFound, InvalidApiKey, MissingScope, UnknownScope
from treu.auth.models import ApiKey
from treu.kit.text import N_
from treu.kit.time import utc_now

PREFIX = "treu_"
LOOKUP_LENGTH = 12
SECRET_LENGTH = 32
SCOPES = ("events:write", "members:read", "members:write", "admin")
SCOPE_HELP = {
    "events:write": N_("send purchase, return and other events (POS, web shop, app)"),
    "members:read": N_("look up members, balances and ledgers"),
    "members:write": N_("enrol members and update their profile"),
    "admin": N_("everything, including programmes and manual adjustments"),
}
"""What each scope allows (English message ids: the console shows them translated)."""
_ALPHABET = string.ascii_letters + string.digits


TOUCH_EVERY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key and process: it tells an
operator which keys are still in use, and a write per request would cost too much."""


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]
    last_used_at: datetime | None = field(default=None, compare=False)

    @property
    def needs_touch(self) -> bool:
        return self.last_used_at is None or utc_now() - self.last_used_at > TOUCH_EVERY

    @property
    def actor(self) -> str:
        return f"apikey:{self.name}"

    def allows(self, scope: str) -> bool:
        """``scope`` may name alternatives: ``"events:write|members:read"``."""
        return "admin" in self.scopes or any(s in self.scopes for s in scope.split("|"))

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            wanted = scope.split("|")
            raise MissingScope(
                f"this API key lacks the scope {' or '.join(map(repr, wanted))}", scope=scope
            )


_TOKEN_LENGTH = len(PREFIX) + LOOKUP_LENGTH + SECRET_LENGTH


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyService:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(
        self, session: Session, *, name: str, scopes: list[str], actor: str | None = None
    ) -> tuple[ApiKey, str]:
        """Returns the stored key and the plaintext key (shown once, never stored). With
        an ``actor`` (the console, the CLI) the creation is in the audit log."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise UnknownScope(
                f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(SCOPES)}"
            )
        lookup = "".join(secrets.choice(_ALPHABET) for _ in range(LOOKUP_LENGTH))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
        plaintext = f"{PREFIX}{lookup}{secret}"
        key = ApiKey(
            name=name, lookup=lookup, secret_hash=_hash(plaintext), scopes=sorted(set(scopes))
        )
        session.add(key)
        session.flush()
        if actor is not None:
            audit.record(
                session,
                actor=actor,
                action="apikey.created",
                subject_type="api_key",
                subject_id=f"{PREFIX}{lookup}",
                data={"name": name, "scopes": key.scopes},
            )
        return key, plaintext

    def revoke(self, session: Session, *, lookup: str, actor: str | None = None) -> bool:
        """Whether an active key was revoked (with an ``actor``, audit-logged)."""
        result = session.execute(
            update(ApiKey)
            .where(ApiKey.lookup == lookup, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utc_now())
        )
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].key_id != lookup}
        revoked = bool(getattr(result, "rowcount", 0))
        if revoked and actor is not None:
            name = session.scalar(select(ApiKey.name).where(ApiKey.lookup == lookup))
            audit.record(
                session,
                actor=actor,
                action="apikey.revoked",
                subject_type="api_key",
                subject_id=f"{PREFIX}{lookup}",
                data={"name": name},
            )
        return revoked

    def active(self, session: Session, *, lookup: str) -> ApiKey:
        """The key with this lookup prefix, unless revoked (``ApiKeyNotFound``)."""
        row = session.scalar(
            select(ApiKey).where(ApiKey.lookup == lookup, ApiKey.revoked_at.is_(None))
        )
        if row is None:
            raise ApiKeyNotFound(f"no active API key {PREFIX}{lookup[:LOOKUP_LENGTH]}")
        return row

    def list(self, session: Session) -> list[ApiKey]:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    def cached(self, token: str) -> Principal | None:
        """The principal of a key verified less than ``cache_seconds`` ago, without any
        database work (the HTTP layer answers most requests from here without leaving the
        event loop); None when the key must be checked against the database."""
        if not self._well_formed(token):
            raise InvalidApiKey("the API key is malformed (expected treu_…)")
        cached = self._cache.get(_hash(token))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    def _well_formed(self, token: str) -> bool:
        return (
            token.startswith(PREFIX) and len(token) == len(PREFIX) + LOOKUP_LENGTH + SECRET_LENGTH
        )

    def authenticate(self, session: Session, token: str, *, cache_seconds: float = 0) -> Principal:
        """Verify ``token``. A verified key is trusted for ``cache_seconds`` without asking
        the database again (revocation takes effect within that time)."""
        if not self._well_formed(token):
            raise InvalidApiKey("the API key is malformed (expected treu_…)")
        digest = _hash(token)
        now = time.monotonic()
        if cache_seconds > 0:
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
        lookup = token[len(PREFIX) : len(PREFIX) + LOOKUP_LENGTH]
        row = session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.secret_hash, digest)
        ):
            raise InvalidApiKey("the API key is not valid or has been revoked")
        principal = Principal(
            key_id=row.lookup,
            name=row.name,
            scopes=frozenset(row.scopes),
            last_used_at=row.last_used_at,
        )
        if cache_seconds > 0:
            # Cached as touched: the caller touches a stale key on this request.
            fresh = (
                replace(principal, last_used_at=utc_now()) if principal.needs_touch else principal
            )
            with self._lock:
                self._cache[digest] = (now + cache_seconds, fresh)
        return principal

    def touch(self, session: Session, *, lookup: str, at: datetime) -> None:
        session.execute(update(ApiKey).where(ApiKey.lookup == lookup).values(last_used_at=at))


api_keys = ApiKeyService()
