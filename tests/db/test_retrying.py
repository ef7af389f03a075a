"""``Database.retrying``: the one retry of a unit of work that lost a unique-constraint
race — a fresh unit of work per attempt, what the first wrote rolled back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests import factories as f
from treu.db.session import Database
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.programmes.service import programmes


def test_a_lost_race_is_retried_in_a_fresh_unit_of_work(db: Database) -> None:
    prog = f.programme(db)
    f.member(db, prog)  # one enrolled before
    attempts: list[int] = []

    def enrol(session: Session, attempt: int) -> str:
        attempts.append(attempt)
        programme = programmes.get(session, prog.id)
        members.enrol(
            session,
            programme=programme,
            data=MemberCreate.model_validate(
                {"programme": prog.slug, "email": f"{f.unique('r')}@example.com"}
            ),
            writer=ledger.writer(session),
        )
        if attempt == 0:  # as if a concurrent writer had won: this unit rolls back
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return "done"

    assert db.retrying(enrol, attempts=3) == "done"
    assert attempts == [0, 1]
    with db.unit_of_work(write=False) as session:
        enrolled = session.scalar(
            select(func.count()).select_from(Member).where(Member.programme_id == prog.id)
        )
    assert enrolled == 2  # the one before and the retry: the lost attempt rolled back


def test_the_last_attempt_raises_and_other_errors_at_once(db: Database) -> None:
    calls: list[int] = []

    def always(session: Session, attempt: int) -> None:
        calls.append(attempt)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        db.retrying(always, attempts=3)
    assert calls == [0, 1, 2]

    def broken(session: Session, attempt: int) -> None:
        calls.append(attempt)
        raise KeyError("not a race")

    calls.clear()
    with pytest.raises(KeyError):
        db.retrying(broken, attempts=3)
    assert calls == [0]
