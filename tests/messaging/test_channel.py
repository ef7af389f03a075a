"""What the e-mail channel plans from the outbox: the exact facts of each row, in the
member's language, and no mail where none is called for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests import factories as f
from tests.messaging.conftest import SECRET
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.kit.ids import new_id
from treu.kit.time import end_of_year, local_date, utc_now
from treu.members.models import Member
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.messaging.channel import EmailChannel
from treu.outbox.events import DomainEvent, PointsExpiring, TierChanged
from treu.outbox.models import OutboxMessage
from treu.outbox.service import outbox

NBSP = "\xa0"
CHANNEL = EmailChannel(Settings(secret_key=SECRET, public_url="https://treu.example"))


def record(db: Database, *events: DomainEvent) -> None:
    with db.unit_of_work() as session:
        outbox.record(session, *events)


def plan(db: Database, who: Member, *types: str) -> list[Planned]:
    with db.unit_of_work(write=False) as session:
        found = outbox.messages(session, member_id=who.id, types=types or None)
        return CHANNEL.plan(session, found, now=utc_now())


def test_points_expiring_names_exactly_the_points_and_date_of_its_notice(db: Database) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    anna = f.member(db, prog, language="de", first_name="Anna")
    john = f.member(db, prog, language="en", first_name="John")
    year = local_date(utc_now(), "Europe/Berlin").year
    expires_at = end_of_year(year, "Europe/Berlin")  # 22:59:59.999999Z in winter
    for who in (anna, john):
        record(
            db,
            PointsExpiring(
                programme_id=prog.id,
                member_id=who.id,
                occurred_at=utc_now(),
                points=1234,
                expires_at=expires_at,
            ),
        )
    [german] = plan(db, anna, "points.expiring")
    assert german.payload["subject"] == f"1.234 Punkte verfallen am 31.12.{year}"
    assert f"1.234 Punkte auf deinem Konto verfallen am 31.12.{year}." in german.payload["text"]
    assert f"<strong>31.12.{year}</strong>" in german.payload["html"]
    assert german.payload["language"] == "de"
    assert german.payload["text"].startswith("Hallo Anna,")
    [english] = plan(db, john, "points.expiring")
    assert english.payload["subject"] == f"1,234 points expire on Dec 31, {year}"
    assert english.payload["language"] == "en"
    assert english.target == john.email
    assert english.payload["to"] == john.email


def test_a_single_expiring_point_is_one_point(db: Database) -> None:
    prog = f.programme(db, points_name={"de": {"one": "Stern", "other": "Sterne"}})
    who = f.member(db, prog, language="de")
    record(
        db,
        PointsExpiring(
            programme_id=prog.id,
            member_id=who.id,
            occurred_at=utc_now(),
            points=1,
            expires_at=utc_now() + timedelta(days=10),
        ),
    )
    [notice] = plan(db, who, "points.expiring")
    assert notice.payload["subject"].startswith("1 Stern verfallen am ")


def test_a_coupon_mail_names_its_code_and_what_it_is_worth(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, language="de")
    _, coupon = f.coupon(db, prog, who)
    [mail] = plan(db, who, "coupon.issued")
    assert mail.payload["subject"] == f"Dein Gutschein: {coupon.code}"
    assert coupon.code in mail.payload["text"]
    assert f"5,00{NBSP}€" in mail.payload["text"]  # the voucher's value, by Babel
    assert mail.dedupe_key.startswith("email:")
    assert mail.outbox_id is not None
    assert mail.dedupe_key == f"email:{mail.outbox_id}"


def _tier_change(prog_id: Any, who: Member, old: str | None, new: str | None) -> TierChanged:
    return TierChanged(
        programme_id=prog_id,
        member_id=who.id,
        occurred_at=utc_now(),
        from_tier=old,
        to_tier=new,
        reason="qualified",
    )


def test_a_tier_mail_goes_for_an_upgrade_only(db: Database) -> None:
    prog = f.tiered(db)
    up = f.member(db, prog, language="de", first_name="Anna")
    down = f.member(db, prog, language="de")
    first = f.member(db, prog, language="en")
    f.earn(db, prog, up, 1234, at=utc_now())
    record(
        db,
        _tier_change(prog.id, up, "silber", "gold"),
        _tier_change(prog.id, down, "gold", "silber"),
        _tier_change(prog.id, first, None, "silber"),
    )
    [upgrade] = plan(db, up, "tier.changed")
    assert upgrade.payload["subject"] == "Glückwunsch: Du bist jetzt Gold!"
    assert "(bisher Silber)" in upgrade.payload["text"]
    assert "Dein Kontostand: 1.234 Punkte" in upgrade.payload["text"]
    assert plan(db, down, "tier.changed") == []
    [entered] = plan(db, first, "tier.changed")
    assert entered.payload["subject"] == "Congratulations: you're now Silver!"


def test_other_outbox_rows_and_closed_members_get_no_mail(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    f.earn(db, prog, who, 100, at=utc_now())
    assert [p.event_type for p in plan(db, who)] == ["member.enrolled"]
    with db.unit_of_work() as session:
        members.update(
            session,
            member=members.get(session, who.id),
            data=MemberUpdate.model_validate({"status": "closed"}),
        )
    assert plan(db, who) == []


def test_members_imported_with_their_old_enrolment_get_no_welcome(db: Database) -> None:
    prog = f.programme(db)
    imported = f.member(db, prog, enrolled_at=(utc_now() - timedelta(days=400)).isoformat())
    yesterday = f.member(db, prog, enrolled_at=(utc_now() - timedelta(hours=20)).isoformat())
    assert plan(db, imported) == []
    assert [p.target for p in plan(db, yesterday)] == [yesterday.email]


def test_a_row_it_cannot_read_is_left_out_and_holds_up_nothing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    with db.unit_of_work() as session:
        session.add(
            OutboxMessage(
                id=new_id(),
                type="points.expiring",
                programme_id=prog.id,
                member_id=who.id,
                payload={"points": "many"},
                occurred_at=utc_now(),
                created_at=utc_now(),
            )
        )
    with caplog.at_level("ERROR", logger="treu.messaging"):
        assert [p.event_type for p in plan(db, who)] == ["member.enrolled"]
    assert "payload not understood" in caplog.text


def test_personal_data_in_html_is_escaped(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, first_name="<script>alert(1)</script>", language="en")
    [mail] = plan(db, who)
    assert "<script>" not in mail.payload["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail.payload["html"]
    assert mail.payload["text"].startswith("Hello <script>alert(1)</script>,")
