"""Portal sign-in codes: sent through the outbox without the code in it, valid ten
minutes, five tries, a new code replaces the old, a rate limit per member, and the same
answer for an address that is no member's."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests import factories as f
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.codes import MAX_TRIES, PER_WINDOW, VALID_FOR, Issued, codes, derive
from treu.members.models import Member, SignInCode
from treu.outbox.models import OutboxMessage

KEY = b"test-key-0123456789abcdef"


def _ask(
    db: Database, who: Member, *, at: object = None, email: str | None = None
) -> Issued | None:
    with db.unit_of_work() as session:
        return codes.request(
            session,
            programme_id=who.programme_id,
            email=email or str(who.email),
            key=KEY,
            now=at or utc_now(),  # type: ignore[arg-type]
        )


def _try(db: Database, who: Member, code: str, *, at: object = None) -> Member | None:
    with db.unit_of_work() as session:
        return codes.verify(
            session,
            programme_id=who.programme_id,
            email=str(who.email).upper(),  # addresses are compared without case
            code=code,
            key=KEY,
            now=at or utc_now(),  # type: ignore[arg-type]
        )


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_a_code_is_sent_through_the_outbox_and_signs_in_once(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    issued = _ask(db, who)
    assert issued is not None
    assert len(issued.code) == 6
    assert issued.code.isdigit()
    with db.unit_of_work(write=False) as session:
        row = session.get_one(SignInCode, who.id)
        [sent] = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.member_id == who.id, OutboxMessage.type == "member.sign_in_code"
            )
        ).all()
    # only a hash is stored, and the outbox row holds no code: the key derives it
    assert row.code_hash is not None
    assert issued.code not in row.code_hash
    assert issued.code not in str(sent.payload)
    assert derive(KEY, who.id, str(sent.payload["nonce"])) == issued.code
    assert derive(b"another key", who.id, str(sent.payload["nonce"])) != issued.code

    signed = _try(db, who, issued.code[:3] + " " + issued.code[3:])
    assert signed is not None
    assert signed.id == who.id
    assert _try(db, who, issued.code) is None  # used up


def test_a_code_expires_after_ten_minutes(db: Database) -> None:
    who = f.member(db, f.programme(db))
    now = utc_now()
    issued = _ask(db, who, at=now)
    assert issued is not None
    assert issued.expires_at == now + VALID_FOR
    assert _try(db, who, issued.code, at=now + VALID_FOR) is None
    assert _try(db, who, issued.code, at=now + VALID_FOR - timedelta(seconds=1)) is not None


def test_five_wrong_tries_end_the_code(db: Database) -> None:
    who = f.member(db, f.programme(db))
    issued = _ask(db, who)
    assert issued is not None
    for _ in range(MAX_TRIES):
        assert _try(db, who, _wrong(issued.code)) is None
    assert _try(db, who, issued.code) is None  # right, but too late
    # a new code (after the minute) works again
    again = _ask(db, who, at=utc_now() + timedelta(minutes=2))
    assert again is not None
    assert _try(db, who, again.code, at=utc_now() + timedelta(minutes=2)) is not None


def test_a_new_code_replaces_the_old(db: Database) -> None:
    who = f.member(db, f.programme(db))
    now = utc_now()
    first = _ask(db, who, at=now)
    second = _ask(db, who, at=now + timedelta(minutes=1))
    assert first is not None
    assert second is not None
    if first.code != second.code:  # one in a million they are the same
        assert _try(db, who, first.code, at=now + timedelta(minutes=2)) is None
    assert _try(db, who, second.code, at=now + timedelta(minutes=2)) is not None


def test_requests_are_rate_limited_per_member(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    other = f.member(db, prog)
    now = utc_now()
    assert _ask(db, who, at=now) is not None
    assert _ask(db, who, at=now + timedelta(seconds=30)) is None  # one a minute
    assert _ask(db, other, at=now + timedelta(seconds=30)) is not None  # per member
    sent = 1
    at = now
    while sent < PER_WINDOW:
        at += timedelta(minutes=1)
        assert _ask(db, who, at=at) is not None
        sent += 1
    assert _ask(db, who, at=at + timedelta(minutes=5)) is None  # five an hour
    assert _ask(db, who, at=now + timedelta(hours=1, minutes=1)) is not None
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.member_id == who.id, OutboxMessage.type == "member.sign_in_code"
            )
        ).all()
    assert len(rows) == PER_WINDOW + 1


def test_unknown_closed_and_other_programmes_addresses_get_nothing(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    elsewhere = f.programme(db)
    assert _ask(db, who, email="nobody-" + str(who.email)) is None
    with db.unit_of_work() as session:
        assert (
            codes.request(session, programme_id=elsewhere.id, email=str(who.email), key=KEY) is None
        )
        session.get_one(Member, who.id).status = "blocked"
    assert _ask(db, who) is None
    with db.unit_of_work(write=False) as session:
        assert session.get(SignInCode, who.id) is None


def test_the_programme_comes_from_the_slug(db: Database) -> None:
    prog = f.programme(db)
    f.programme(db)
    with db.unit_of_work(write=False) as session:
        found = codes.programme_for(session, prog.slug)
        assert found is not None
        assert found.id == prog.id
        assert codes.programme_for(session, "no-such-programme") is None
        # several programmes: no slug, no programme
        assert codes.programme_for(session, None) is None
