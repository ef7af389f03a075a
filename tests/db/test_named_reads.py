"""``Named``: prebuilt reads whose rows are named tuples, and ``Named.together``, several
of them in one round trip (PostgreSQL's pipeline mode; one after the other elsewhere)."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, Uuid, bindparam, cast, select
from sqlalchemy.exc import DBAPIError

from tests import factories as f
from tests.support.queries import statements
from treu.db.base import Named
from treu.db.session import Database
from treu.members.models import Member

_BY_PROGRAMME = Named(
    "MemberRow",
    lambda: (
        select(Member.id, Member.first_name, Member.card_number)
        .where(Member.programme_id == bindparam("programme_id", type_=Uuid()))
        .order_by(Member.first_name)
    ),
)
_ONE = Named(
    "OneRow",
    lambda: select(Member.first_name).where(Member.id == bindparam("member_id", type_=Uuid())),
)
_BROKEN = Named(
    "BrokenRow",
    lambda: select(cast(bindparam("text", type_=String()), Integer).label("number")),
)


def test_rows_read_by_name_and_together_as_one_by_one(db: Database) -> None:
    prog = f.programme(db)
    other = f.programme(db)
    ada = f.member(db, prog, first_name="Ada")
    f.member(db, prog, first_name="Bo")
    f.member(db, other, first_name="Cy")
    with db.unit_of_work(write=False) as session:
        connection = session.connection()
        alone = _BY_PROGRAMME.rows(connection, programme_id=prog.id)
        assert [(row.first_name, row.id == ada.id) for row in alone] == [
            ("Ada", True),
            ("Bo", False),
        ]
        with statements(db) as seen:
            both, others, one, none = Named.together(
                connection,
                _BY_PROGRAMME.call(programme_id=prog.id),
                _BY_PROGRAMME.call(programme_id=other.id),
                _ONE.call(member_id=ada.id),
                _ONE.call(member_id=other.id),  # no such member: no row
            )
        assert both == alone
        assert [row.first_name for row in others] == ["Cy"]
        assert [row.first_name for row in one] == ["Ada"]
        assert none == []
        assert _ONE.first(connection, member_id=ada.id).first_name == "Ada"
        assert _ONE.first(connection, member_id=other.id) is None
    # every read is still seen by the statement listeners (the pages' query-count tests)
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 4


def test_a_failing_read_among_several_raises_the_database_error(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite casts any text to a number; its reads run one by one anyway")
    prog = f.programme(db)
    with pytest.raises(DBAPIError), db.unit_of_work(write=False) as session:
        Named.together(
            session.connection(),
            _BY_PROGRAMME.call(programme_id=prog.id),
            _BROKEN.call(text="not a number"),
        )
    with db.unit_of_work(write=False) as session:  # the connection is usable again
        assert _BY_PROGRAMME.rows(session.connection(), programme_id=prog.id) == []
