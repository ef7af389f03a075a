"""Staff accounts: one-time passwords, sign-in, lockout, TOTP, roles, the CLI."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests import factories as f
from treu import cli
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.errors import Invalid
from treu.kit.time import utc_now
from treu.staff import roles
from treu.staff.errors import (
    EmailTaken,
    InvalidRole,
    SignInFailed,
    TotpNotStarted,
    WeakPassword,
)
from treu.staff.models import StaffUser
from treu.staff.service import LOCK_AFTER, LOCK_FOR, SignIn, staff

GOOD = "correct horse battery staple"


def _email() -> str:
    return f"{f.unique('staff')}@example.org"


def _create(db: Database, role: str = "marketing") -> tuple[str, str]:
    email = _email()
    with db.unit_of_work() as session:
        _, password = staff.create(session, email=email, role=role, actor="test")
    return email, password


def _sign_in(
    db: Database, email: str, password: str, code: str | None = None, now: datetime | None = None
) -> SignIn:
    """One attempt in its own unit of work, committed whatever the outcome (as the
    console does: the failure count must stay)."""
    with db.unit_of_work() as session:
        return staff.authenticate(session, email=email, password=password, code=code, now=now)


def test_a_new_account_signs_in_with_its_one_time_password_then_must_change_it(
    db: Database,
) -> None:
    email, password = _create(db)
    assert len(password) == 16
    user = _sign_in(db, email.upper(), password).check()  # the address in any spelling
    assert user.must_change_password
    assert user.last_sign_in_at is not None
    with db.unit_of_work() as session:
        user = staff.by_email(session, email)
        with pytest.raises(WeakPassword, match="at least 12"):
            staff.change_password(session, user, current=password, new="short")
        with pytest.raises(WeakPassword):
            staff.change_password(session, user, current=password, new=email)
        with pytest.raises(WeakPassword):
            staff.change_password(session, user, current=password, new="aaaaaaaaaaaaaaaa")
        with pytest.raises(SignInFailed):
            staff.change_password(session, user, current="not it at all", new=GOOD)
        staff.change_password(session, user, current=password, new=GOOD)
    with pytest.raises(SignInFailed):
        _sign_in(db, email, password).check()  # the one-time password is gone
    user = _sign_in(db, email, GOOD).check()
    assert not user.must_change_password
    with db.unit_of_work(write=False) as session:
        actions = session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.subject_type == "staff", AuditEvent.subject_id == str(user.id)
            )
        ).all()
    assert {"staff.created", "staff.password_changed"} <= set(actions)
    # the hash is argon2, never the password
    with db.unit_of_work(write=False) as session:
        stored = staff.by_email(session, email).password_hash
    assert stored.startswith("$argon2id$")
    assert GOOD not in stored


def test_unknown_address_wrong_password_and_disabled_account_answer_alike(db: Database) -> None:
    email, password = _create(db)
    unknown = _sign_in(db, _email(), password).refusal
    wrong = _sign_in(db, email, password + "x").refusal
    with db.unit_of_work() as session:
        staff.disable(session, staff.by_email(session, email), actor="test")
    disabled = _sign_in(db, email, password).refusal
    assert isinstance(unknown, SignInFailed)
    assert isinstance(wrong, SignInFailed)
    assert isinstance(disabled, SignInFailed)
    assert unknown.detail == wrong.detail == disabled.detail
    with db.unit_of_work() as session:
        staff.enable(session, staff.by_email(session, email), actor="test")
    assert _sign_in(db, email, password).user is not None


def test_failed_sign_ins_lock_the_account_for_a_while(db: Database) -> None:
    email, password = _create(db)
    now = utc_now()
    for _ in range(LOCK_AFTER - 1):
        assert isinstance(_sign_in(db, email, "wrong", now=now).refusal, SignInFailed)
    assert _sign_in(db, email, password, now=now).user is not None  # a success resets
    for _ in range(LOCK_AFTER):
        assert isinstance(_sign_in(db, email, "wrong", now=now).refusal, SignInFailed)
    # locked now: even the right password is refused, with the answer an unknown address
    # gets (a lock message would tell that the address has an account)
    locked = _sign_in(db, email, password, now=now + timedelta(minutes=1)).refusal
    unknown = _sign_in(db, "nobody@example.org", password, now=now).refusal
    assert isinstance(locked, SignInFailed)
    assert isinstance(unknown, SignInFailed)
    assert locked.detail == unknown.detail
    later = now + LOCK_FOR + timedelta(seconds=1)
    assert _sign_in(db, email, password, now=later).user is not None
    # an admin's reset unlocks at once
    for _ in range(LOCK_AFTER):
        _sign_in(db, email, "wrong", now=later)
    with db.unit_of_work() as session:
        fresh = staff.reset_password(session, staff.by_email(session, email), actor="admin")
    user = _sign_in(db, email, fresh, now=later).check()
    assert user.must_change_password


def test_totp_needs_a_fresh_code_once_confirmed(db: Database) -> None:
    email, password = _create(db, "admin")
    now = utc_now()
    with db.unit_of_work() as session:
        user = staff.by_email(session, email)
        with pytest.raises(TotpNotStarted):
            staff.confirm_totp(session, user, code="123456", now=now)
        setup = staff.start_totp(session, user)
    assert setup.uri.startswith("otpauth://totp/Treu:")
    totp = pyotp.TOTP(setup.secret)
    # not active until confirmed: the password alone still signs in
    assert _sign_in(db, email, password, now=now).user is not None
    with db.unit_of_work() as session:
        user = staff.by_email(session, email)
        with pytest.raises(SignInFailed):
            staff.confirm_totp(
                session, user, code="000000" if totp.at(now) != "000000" else "111111", now=now
            )
    with db.unit_of_work() as session:
        staff.confirm_totp(session, staff.by_email(session, email), code=totp.at(now), now=now)
    later = now + timedelta(seconds=90)
    assert isinstance(_sign_in(db, email, password, now=later).refusal, SignInFailed)
    assert _sign_in(db, email, password, totp.at(later), now=later).user is not None
    # the same code a second time is refused (seen over a shoulder)
    assert isinstance(
        _sign_in(db, email, password, totp.at(later), now=later).refusal, SignInFailed
    )
    # a code from long ago is refused
    assert isinstance(
        _sign_in(db, email, password, totp.at(now - timedelta(minutes=10)), now=later).refusal,
        SignInFailed,
    )


def test_creating_refuses_a_taken_address_an_unknown_role_and_a_non_address(
    db: Database,
) -> None:
    email, _ = _create(db)
    with db.unit_of_work() as session:
        with pytest.raises(EmailTaken):
            staff.create(session, email=email.upper(), role="support", actor="test")
        with pytest.raises(InvalidRole, match="admin, marketing, support, analyst"):
            staff.create(session, email=_email(), role="root", actor="test")
        with pytest.raises(Invalid):
            staff.create(session, email="not-an-address", role="support", actor="test")


def test_roles_allow_what_the_console_promises() -> None:
    assert roles.allows("admin", "apikeys.manage")
    assert not roles.allows("support", "apikeys.manage")
    assert not roles.allows("support", "rules.publish")
    assert roles.allows("support", "members.adjust")
    assert roles.allows("marketing", "rules.publish")
    assert not roles.allows("marketing", "members.adjust")
    writes = roles.KNOWN - roles.READ
    assert not any(roles.allows("analyst", p) for p in writes)  # an analyst only reads
    assert all(roles.allows("analyst", p) for p in roles.READ)
    assert not roles.allows("root", "dashboard.read")
    with pytest.raises(roles.NotAllowed):
        roles.require("support", "rules.write")
    with pytest.raises(ValueError, match="unknown permission"):
        roles.allows("admin", "rules.wirte")


def test_cli_creates_lists_resets_and_disables(db: Database, runner: CliRunner) -> None:
    email = _email()
    created = runner.invoke(cli.app, ["staff", "create", "--email", email, "--role", "support"])
    assert created.exit_code == 0, created.output
    password = created.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", password)
    assert "shown only once" in created.stderr
    assert _sign_in(db, email, password).user is not None

    listed = runner.invoke(cli.app, ["staff", "list"])
    row = next(line for line in listed.stdout.splitlines() if email in line)
    assert "support" in row
    assert "new" in row
    assert password not in listed.stdout

    again = runner.invoke(cli.app, ["staff", "create", "--email", email, "--role", "support"])
    assert again.exit_code == 1
    assert "exists" in again.stderr

    reset = runner.invoke(cli.app, ["staff", "reset-password", email])
    assert reset.exit_code == 0, reset.output
    assert _sign_in(db, email, reset.stdout.strip()).user is not None

    assert runner.invoke(cli.app, ["staff", "set-role", email, "--role", "analyst"]).exit_code == 0
    assert runner.invoke(cli.app, ["staff", "disable", email]).exit_code == 0
    with db.unit_of_work(write=False) as session:
        user = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        assert (user.role, user.disabled_at is not None) == ("analyst", True)
    bad = runner.invoke(cli.app, ["staff", "set-role", email, "--role", "root"])
    assert bad.exit_code == 1
    assert "unknown role" in bad.stderr
    missing = runner.invoke(cli.app, ["staff", "disable", _email()])
    assert missing.exit_code == 1
    assert "no staff account" in missing.stderr
