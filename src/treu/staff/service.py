"""Staff accounts: create with a one-time password, sign in, change the password,
second factor (TOTP), role, disable. The web console and ``treu staff`` call this.

Sign-in is deliberately dull: a wrong address, password, code or a disabled account all
answer ``SignInFailed``, and an unknown address still costs one argon2 verification, so
neither the answer nor its time tells which e-mail addresses have accounts. After
``LOCK_AFTER`` failures in a row an account is locked for ``LOCK_FOR``, refused with the
same answer in the same time (a lock message would tell which addresses have accounts);
a success resets the count.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from pwdlib import PasswordHash
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.errors import Invalid, TreuError
from treu.kit.time import utc_now
from treu.staff.errors import (
    EmailTaken,
    InvalidRole,
    SignInFailed,
    StaffNotFound,
    TotpNotStarted,
    WeakPassword,
)
from treu.staff.models import StaffUser
from treu.staff.roles import Role

LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
MIN_PASSWORD = 12
MAX_PASSWORD = 256
ISSUER = "Treu"
TOTP_WINDOW = 1
"""Codes of the step before and after now are accepted too (clocks drift, people type)."""

_REFUSED = "e-mail, password or code not accepted"
_hasher = PasswordHash.recommended()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a sign-in attempt: the account, or why not. A refusal is an
    answer, not an exception, because the failure count it changed must be committed:
    the caller commits the unit of work, then raises ``refusal`` (``check()``)."""

    user: StaffUser | None
    refusal: TreuError | None = None

    def check(self) -> StaffUser:
        if self.refusal is not None:
            raise self.refusal
        assert self.user is not None
        return self.user


@dataclass(frozen=True, slots=True)
class TotpSetup:
    """What an authenticator app needs: the secret and the ``otpauth://`` URI (shown as
    a QR code by the console)."""

    secret: str
    uri: str


def _email(value: str) -> str:
    return value.strip().lower()


def one_time_password() -> str:
    """16 characters of the URL-safe alphabet: 96 bits, typed once."""
    return secrets.token_urlsafe(12)


def check_password(password: str, *, email: str) -> None:
    """The policy (NIST SP 800-63B): long rather than clever — at least ``MIN_PASSWORD``
    characters, not the e-mail address, not one character repeated."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD} characters")
    if password.strip().lower() == _email(email) or len(set(password)) < 4:
        raise WeakPassword("choose a password that is not the e-mail address or a repetition")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidRole(
            f"unknown role {value!r}; choose from {', '.join(r.value for r in Role)}"
        ) from None


class StaffService:
    def create(
        self, session: Session, *, email: str, role: str, actor: str, now: datetime | None = None
    ) -> tuple[StaffUser, str]:
        """A new account and its one-time password (shown once; to be changed at the
        first sign-in)."""
        address = _email(email)
        if "@" not in address or len(address) > 254:
            raise Invalid(f"{email!r} is not an e-mail address")
        checked = _role(role)
        if session.scalar(select(StaffUser.id).where(StaffUser.email == address)) is not None:
            raise EmailTaken(f"a staff account for {address} exists")
        password = one_time_password()
        user = StaffUser(
            email=address,
            role=checked.value,
            password_hash=_hasher.hash(password),
            must_change_password=True,
            failed_attempts=0,
            totp_enabled=False,
        )
        session.add(user)
        session.flush()
        self._audit(session, actor, "staff.created", user, {"role": checked.value})
        return user, password

    def get(self, session: Session, user_id: uuid.UUID) -> StaffUser:
        user = session.get(StaffUser, user_id)
        if user is None:
            raise StaffNotFound(f"no staff account {user_id}")
        return user

    def by_email(self, session: Session, email: str) -> StaffUser:
        user = session.scalar(select(StaffUser).where(StaffUser.email == _email(email)))
        if user is None:
            raise StaffNotFound(f"no staff account for {_email(email)}")
        return user

    def list(self, session: Session) -> list[StaffUser]:
        return list(session.scalars(select(StaffUser).order_by(StaffUser.email)))

    def count(self, session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(StaffUser)) or 0)

    # --- signing in ---------------------------------------------------------------------

    def authenticate(
        self,
        session: Session,
        *,
        email: str,
        password: str,
        code: str | None = None,
        now: datetime | None = None,
    ) -> SignIn:
        """The account, if the password (and, where enabled, the TOTP code) match. The
        row is locked while the failure count changes, so parallel guesses all count.
        Commit the unit of work whatever the outcome, then ``check()`` it."""
        now = now or utc_now()
        user = session.scalar(
            select(StaffUser).where(StaffUser.email == _email(email)).with_for_update()
        )
        if user is None:
            _hasher.verify(password, _DUMMY_HASH)  # the same time as a wrong password
            return SignIn(None, SignInFailed(_REFUSED))
        if user.locked_until is not None and user.locked_until > now:
            # The same answer, in the same time, as for an unknown address: a lock
            # message would tell which addresses have accounts. The lock still holds.
            _hasher.verify(password, user.password_hash)
            return SignIn(None, SignInFailed(_REFUSED))
        valid, updated = _hasher.verify_and_update(password, user.password_hash)
        if valid and user.totp_enabled:
            valid = self._accept_code(user, code, now)
        if not valid or user.disabled_at is not None:
            user.failed_attempts += 1
            if user.failed_attempts >= LOCK_AFTER:
                user.locked_until = now + LOCK_FOR
                user.failed_attempts = 0
                self._audit(session, "system", "staff.locked", user, {})
            session.flush()
            return SignIn(None, SignInFailed(_REFUSED))
        if updated is not None:  # the recommended parameters changed: rehash
            user.password_hash = updated
        user.failed_attempts = 0
        user.locked_until = None
        user.last_sign_in_at = now
        session.flush()
        return SignIn(user)

    def password_matches(self, user: StaffUser, password: str) -> bool:
        return bool(_hasher.verify(password, user.password_hash))

    def change_password(self, session: Session, user: StaffUser, *, current: str, new: str) -> None:
        """Change the password; the current one (the one-time one at first) proves it is
        the user."""
        if not self.password_matches(user, current):
            raise SignInFailed("the current password is not right")
        check_password(new, email=user.email)
        if self.password_matches(user, new):
            raise WeakPassword("choose a password other than the current one")
        user.password_hash = _hasher.hash(new)
        user.must_change_password = False
        session.flush()
        self._audit(session, user.email, "staff.password_changed", user, {})

    def reset_password(self, session: Session, user: StaffUser, *, actor: str) -> str:
        """A new one-time password (an admin helps a user who forgot theirs); unlocks."""
        password = one_time_password()
        user.password_hash = _hasher.hash(password)
        user.must_change_password = True
        user.failed_attempts = 0
        user.locked_until = None
        session.flush()
        self._audit(session, actor, "staff.password_reset", user, {})
        return password

    # --- second factor -----------------------------------------------------------------

    def start_totp(self, session: Session, user: StaffUser) -> TotpSetup:
        """A new secret (not active until ``confirm_totp``)."""
        secret = pyotp.random_base32()
        user.totp_secret = secret
        user.totp_enabled = False
        user.totp_last_step = None
        session.flush()
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
        return TotpSetup(secret, uri)

    def confirm_totp(
        self, session: Session, user: StaffUser, *, code: str, now: datetime | None = None
    ) -> None:
        if user.totp_secret is None:
            raise TotpNotStarted("start setting up the second factor first")
        if not self._accept_code(user, code, now or utc_now()):
            raise SignInFailed("the code is not right; check the clock of your phone")
        user.totp_enabled = True
        session.flush()
        self._audit(session, user.email, "staff.totp_enabled", user, {})

    def disable_totp(self, session: Session, user: StaffUser, *, actor: str) -> None:
        user.totp_secret = None
        user.totp_enabled = False
        user.totp_last_step = None
        session.flush()
        self._audit(session, actor, "staff.totp_disabled", user, {})

    def _accept_code(self, user: StaffUser, code: str | None, now: datetime) -> bool:
        """Whether ``code`` is a current TOTP code not used before (its time step is
        later than the last accepted one)."""
        if user.totp_secret is None or not code:
            return False
        totp = pyotp.TOTP(user.totp_secret)
        step_now = totp.timecode(now)
        for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
            step = step_now + offset
            if user.totp_last_step is not None and step <= user.totp_last_step:
                continue
            if secrets.compare_digest(totp.generate_otp(step), code.strip()):
                user.totp_last_step = step
                return True
        return False

    # --- administration ----------------------------------------------------------------

    def set_role(self, session: Session, user: StaffUser, *, role: str, actor: str) -> None:
        checked = _role(role)
        before = user.role
        user.role = checked.value
        session.flush()
        self._audit(session, actor, "staff.role_changed", user, {"from": before, "to": checked})

    def disable(
        self, session: Session, user: StaffUser, *, actor: str, now: datetime | None = None
    ) -> None:
        user.disabled_at = now or utc_now()
        session.flush()
        self._audit(session, actor, "staff.disabled", user, {})

    def enable(self, session: Session, user: StaffUser, *, actor: str) -> None:
        user.disabled_at = None
        session.flush()
        self._audit(session, actor, "staff.enabled", user, {})

    def _audit(
        self, session: Session, actor: str, action: str, user: StaffUser, data: dict[str, str]
    ) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="staff",
            subject_id=str(user.id),
            data={"email": user.email, **data},
        )


staff = StaffService()
