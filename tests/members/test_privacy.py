"""A member's copy of their data (``privacy.export``) and their deletion requests, on
both databases: the copy holds each kind of record Treu keeps about a member who has
them, and nothing of anyone else; a deletion request is recorded once."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from tests import factories as f
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.members.notes import notes
from treu.messaging.consents import consents
from treu.messaging.models import InboxMessage
from treu.privacy.models import DeletionRequest
from treu.privacy.service import SECRET_COLUMNS, member_tables, privacy
from treu.programmes.models import Programme

EXPECTED = {
    "consents",
    "postings",
    "lots",
    "tier_history",
    "member_tiers",
    "redemptions",
    "coupons",
    "challenge_progress",
    "member_badges",
    "deliveries",
    "inbox_messages",
    "member_notes",
    "deletion_requests",
    "events",
}
"""What the feature promises the copy holds (tables), for a member who has each."""


def _message(db: Database, prog: Programme, who: Member, title: str) -> None:
    delivery_id = f.delivery(db, who)
    with db.unit_of_work() as session:
        session.add(
            InboxMessage(
                id=delivery_id,
                programme_id=prog.id,
                member_id=who.id,
                event_type="coupon_issued",
                title=title,
                body_text=title,
                body_html=f"<p>{title}</p>",
                created_at=utc_now(),
            )
        )


def _full_history(db: Database, prog: Programme, who: Member, tag: str) -> None:
    """Every kind of record: purchases (postings, lots, tier change), a badge, a coupon,
    challenge progress, consents, a message, a note, a deletion request."""
    f.rule(
        db,
        prog,
        name=f"Review {tag}",
        trigger="review_submitted",
        effect={"type": "fixed", "points": 50},
        badge={
            "code": f"reviewer-{tag}",
            "name": {"en": "Reviewer", "de": "Rezensent"},
            "icon": "⭐",
        },
    )
    f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=15_000))
    f.ingest_one(
        db,
        {
            "id": f.unique("review"),
            "type": "review_submitted",
            "programme": prog.slug,
            "member": f.member_ref(who),
            "occurred_at": (utc_now() - timedelta(minutes=1)).isoformat(),
            "attributes": {"product_sku": "4001", "rating": 5},
        },
    )
    f.coupon(db, prog, who)
    _message(db, prog, who, f"Your coupon {tag}")
    with db.unit_of_work() as session:
        member = session.get_one(Member, who.id)
        consents.record(session, member=member, channel="email", granted=True, source="pos")
        consents.record(session, member=member, channel="email", granted=False, source="portal")
        notes.add(session, member_id=who.id, author="support@example.org", text=f"Note {tag}")
        privacy.request_deletion(session, member=member, source="portal", actor="test")


def test_the_copy_holds_every_kind_of_record_and_nothing_of_another_member(
    db: Database,
) -> None:
    prog = f.tiered(db)
    f.challenge(
        db,
        prog,
        trigger=["purchase"],
        goal={"type": "count", "target": 3},
        window={"type": "repeating", "every": "month"},
    )
    who = f.member(db, prog, first_name="Mia", attributes={"size": "M"})
    other = f.member(db, prog, first_name="Ole")
    _full_history(db, prog, who, "mia")
    _full_history(db, prog, other, "ole")

    with db.unit_of_work(write=False) as session:
        data = privacy.export(session, member_id=who.id)
    text = json.dumps(data)  # JSON-ready as it is

    assert data["member"]["id"] == str(who.id)
    assert data["member"]["attributes"] == {"size": "M"}
    records: dict[str, list[dict[str, Any]]] = data["records"]
    empty = sorted(name for name in EXPECTED if not records.get(name))
    assert empty == []
    assert [(c["channel"], c["granted"], c["source"]) for c in records["consents"]] == [
        ("email", True, "pos"),
        ("email", False, "portal"),
    ]
    assert 50 in {p["points"] for p in records["postings"]}
    assert records["tier_history"][0]["to_tier"] == "silber"
    assert records["member_badges"][0]["code"] == "reviewer-mia"
    assert records["inbox_messages"][0]["title"] == "Your coupon mia"
    assert records["member_notes"][0]["text"] == "Note mia"
    assert records["deletion_requests"][0]["status"] == "open"
    assert records["challenge_progress"][0]["current"] == 1
    assert any(a["action"] == "member.deletion_requested" for a in data["audit"])
    # every row is the member's; nothing names the other member
    for name, rows in records.items():
        assert all(row["member_id"] == str(who.id) for row in rows), name
    assert str(other.id) not in text
    assert "Ole" not in text
    for secret in SECRET_COLUMNS:
        assert f'"{secret}"' not in text


def test_every_table_about_members_is_in_the_copy() -> None:
    """The copy is built from the schema: a new table with ``member_id`` is in it."""
    names = {table.name for table in member_tables()}
    assert EXPECTED <= names
    assert "members" not in names


def test_a_member_without_history_gets_an_empty_copy(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    with db.unit_of_work(write=False) as session:
        data = privacy.export(session, member_id=who.id)
    assert data["member"]["email"] == who.email
    assert data["format"] == "treu-member-export/1"
    assert all(data["records"][name] == [] for name in EXPECTED)
    assert [a["member_id"] for a in data["records"]["accounts"]] == [str(who.id)]
    assert [o["type"] for o in data["records"]["outbox"]] == ["member.enrolled"]


def test_a_deletion_request_is_recorded_once(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    with db.unit_of_work() as session:
        member = session.get_one(Member, who.id)
        first = privacy.request_deletion(session, member=member, source="portal", actor="m")
        second = privacy.request_deletion(session, member=member, source="api", actor="m")
    assert first.created
    assert not second.created
    assert second.request.id == first.request.id
    with db.unit_of_work(write=False) as session:
        found = privacy.open_request(session, who.id)
    assert found is not None
    assert found.source == "portal"


def test_the_database_refuses_a_second_open_request(db: Database) -> None:
    """The guard behind concurrent requests: one open request per member."""
    prog = f.programme(db)
    who = f.member(db, prog)
    with db.unit_of_work() as session:
        session.add(DeletionRequest(member_id=who.id, programme_id=prog.id, source="portal"))
    with db.unit_of_work() as session:
        session.add(DeletionRequest(member_id=who.id, programme_id=prog.id, source="api"))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
