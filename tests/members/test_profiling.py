"""Progressive profiling (``treu.events.profiling``) on both databases: the order of the
fields, the points a field would earn under the published ``profile_completed`` rules
and their limits, and saving a profile earning as the API's event does, once."""

from __future__ import annotations

from tests import factories as f
from treu.db.session import Database
from treu.events.profiling import FIELDS, missing, profiling
from treu.members.models import Member
from treu.members.schemas import MemberUpdate
from treu.programmes.models import Programme


def _once(db: Database) -> Programme:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Profil vollständig",
        trigger="profile_completed",
        effect={"type": "fixed", "points": 200},
        limits=[{"per": "lifetime", "max_count": 1}],
    )
    return prog


def _save(
    db: Database, prog: Programme, who: Member, **changes: object
) -> tuple[tuple[str, ...], int]:
    with db.unit_of_work() as session:
        member = session.get_one(Member, who.id)
        saved = profiling.save(
            session, member=member, programme=prog, data=MemberUpdate.model_validate(changes)
        )
        return saved.completed, saved.earned


def _points(db: Database, prog: Programme, who: Member, field: str) -> int:
    with db.unit_of_work(write=False) as session:
        member = session.get_one(Member, who.id)
        return profiling.points_for(session, member=member, programme=prog, field=field)


def test_the_fields_are_asked_in_the_surveys_order(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    assert FIELDS == ("birthday", "phone", "size", "preferences")
    assert missing(who) == list(FIELDS)
    partly = f.member(db, prog, phone="+4915122222222", attributes={"size": "S"})
    assert missing(partly) == ["birthday", "preferences"]


def test_no_rule_no_points(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    assert _points(db, prog, who, "birthday") == 0
    assert _save(db, prog, who, birthday="1990-01-01") == (("birthday",), 0)
    assert f.balance(db, who).available == 0


def test_the_preview_is_what_saving_credits_and_the_limit_holds(db: Database) -> None:
    prog = _once(db)
    who = f.member(db, prog)
    assert _points(db, prog, who, "birthday") == 200
    assert _save(db, prog, who, birthday="1990-01-01", first_name="Mia") == (("birthday",), 200)
    assert f.balance(db, who).available == 200
    # the rule paid once in the member's lifetime: the next field shows and earns nothing
    assert _points(db, prog, who, "phone") == 0
    assert _save(db, prog, who, phone="+4915133333333") == (("phone",), 0)
    assert f.balance(db, who).available == 200
    # a change to a field given before completes nothing
    assert _save(db, prog, who, birthday="1990-01-02") == ((), 0)


def test_a_field_the_api_rewarded_earns_nothing_again_through_the_portal(db: Database) -> None:
    """The API's way (PATCH, then a profile_completed event) and the portal's meet in the
    same rule and its limit: the member is paid once."""
    prog = _once(db)
    who = f.member(db, prog)
    f.ingest_one(
        db,
        {
            "id": f.unique("crm"),
            "type": "profile_completed",
            "programme": prog.slug,
            "member": f.member_ref(who),
            "occurred_at": "2026-01-01T10:00:00Z",
            "attributes": {"field": "birthday"},
        },
    )
    assert f.balance(db, who).available == 200
    assert _points(db, prog, who, "birthday") == 0
    assert _save(db, prog, who, birthday="1990-01-01") == (("birthday",), 0)
    assert f.balance(db, who).available == 200


def test_each_field_earns_once_under_a_rule_without_limits(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db, prog, name="Feld", trigger="profile_completed", effect={"type": "fixed", "points": 30}
    )
    who = f.member(db, prog)
    done = _save(db, prog, who, birthday="1990-01-01", attributes={"size": "M"})
    assert done == (("birthday", "size"), 60)
    _save(db, prog, who, birthday=None)  # removed …
    assert _points(db, prog, who, "birthday") == 0  # … and given before: nothing more
    assert _save(db, prog, who, birthday="1990-02-02") == (("birthday",), 0)
    assert f.balance(db, who).available == 60


def test_a_blocked_member_is_asked_but_earns_nothing(db: Database) -> None:
    prog = _once(db)
    who = f.member(db, prog)
    _save(db, prog, who, status="blocked")
    assert _points(db, prog, who, "birthday") == 0
    assert _save(db, prog, who, birthday="1990-01-01") == (("birthday",), 0)
