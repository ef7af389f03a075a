"""The in-app inbox: the member's messages arrive with the delivery worker (a welcome
after enrolment), are listed newest first with the unread count, and are marked read;
a member who withdrew inbox consent gets none."""

from __future__ import annotations

from sqlalchemy import select

from tests import factories as f
from tests.messaging.conftest import App, AppFactory, dev_settings
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.delivery.worker import Deliverer
from treu.messaging.consents import consents
from treu.messaging.inbox import InboxChannel
from treu.messaging.models import ConsentChannel, InboxMessage
from treu.worker.channels import build_channels


def deliver(db: Database, settings: Settings) -> None:
    deliverer = Deliverer(db, build_channels(settings), threads=1)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()


def inbox_of(app: App, member_id: object, **params: str) -> dict[str, object]:
    answer = app.client.get(
        f"/v1/members/{member_id}/inbox", params=params, headers=app.headers("members:read")
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_an_enrolment_puts_a_welcome_into_the_inbox(
    fresh_db: Database, app_with: AppFactory
) -> None:
    settings = dev_settings(fresh_db)
    assert any(isinstance(c, InboxChannel) for c in build_channels(settings))
    app = app_with(settings, fresh_db)
    prog = f.programme(fresh_db)
    anna = f.member(
        fresh_db, prog, language="de", first_name="Anna", email=None, external_id="anna-1"
    )
    deliver(fresh_db, settings)
    deliver(fresh_db, settings)  # nothing new: nothing twice

    box = inbox_of(app, anna.id)
    assert box["unread"] == 1
    [message] = box["items"]  # type: ignore[misc]
    assert message["title"] == "Willkommen bei Test programme!"
    assert message["text"].startswith("Hallo Anna,")
    assert "<p>Hallo Anna,</p>" in message["html"]
    assert message["event_type"] == "member.enrolled"
    assert message["read_at"] is None
    with fresh_db.unit_of_work(write=False) as session:
        [delivery] = session.scalars(select(Delivery).where(Delivery.channel == "inbox")).all()
    assert delivery.status == "delivered"
    assert delivery.dedupe_key == f"inbox:{delivery.outbox_id}"
    assert message["id"] == str(delivery.id)  # delivered <=> in the inbox


def test_unread_count_mark_read_and_read_all(fresh_db: Database, app_with: AppFactory) -> None:
    settings = dev_settings(fresh_db)
    app = app_with(settings, fresh_db)
    write = app.headers("members:write")
    prog = f.programme(fresh_db)
    who = f.member(fresh_db, prog, language="en")
    deliver(fresh_db, settings)
    f.coupon(fresh_db, prog, who)
    f.coupon(fresh_db, prog, who)
    deliver(fresh_db, settings)

    box = inbox_of(app, who.id)
    assert box["unread"] == 3
    items = box["items"]
    assert isinstance(items, list)
    assert [m["event_type"] for m in items] == ["coupon.issued", "coupon.issued", "member.enrolled"]
    page = inbox_of(app, who.id, limit="2")
    assert len(page["items"]) == 2  # type: ignore[arg-type]
    rest = inbox_of(app, who.id, limit="2", cursor=str(page["next_cursor"]))
    assert [m["id"] for m in rest["items"]] == [items[2]["id"]]  # type: ignore[attr-defined]
    assert rest["next_cursor"] is None

    newest = items[0]["id"]
    read = app.client.post(f"/v1/members/{who.id}/inbox/{newest}/read", headers=write)
    assert read.status_code == 200, read.text
    first_read = read.json()["read_at"]
    assert first_read is not None
    again = app.client.post(f"/v1/members/{who.id}/inbox/{newest}/read", headers=write)
    assert again.json()["read_at"] == first_read
    box = inbox_of(app, who.id)
    assert box["unread"] == 2
    unread = inbox_of(app, who.id, unread="true")
    assert [m["id"] for m in unread["items"]] == [m["id"] for m in items[1:]]  # type: ignore[attr-defined]

    other = f.member(fresh_db, prog)
    assert (
        app.client.post(f"/v1/members/{other.id}/inbox/{newest}/read", headers=write).status_code
        == 404
    )
    assert (
        app.client.post(
            f"/v1/members/{who.id}/inbox/{newest}/read", headers=app.headers("members:read")
        ).status_code
        == 403
    )
    done = app.client.post(f"/v1/members/{who.id}/inbox/read-all", headers=write)
    assert done.status_code == 200, done.text
    assert done.json()["marked"] == 2
    assert inbox_of(app, who.id)["unread"] == 0
    assert inbox_of(app, who.id, unread="true")["items"] == []


def test_withdrawn_inbox_consent_means_no_inbox_message(
    fresh_db: Database, app_with: AppFactory
) -> None:
    settings = dev_settings(fresh_db)
    app = app_with(settings, fresh_db)
    prog = f.programme(fresh_db)
    quiet = f.member(fresh_db, prog)
    with fresh_db.unit_of_work() as session:
        consents.record(
            session,
            member=quiet,
            channel=ConsentChannel.inbox,
            granted=False,
            source="app",
        )
    f.coupon(fresh_db, prog, quiet)
    deliver(fresh_db, settings)
    assert inbox_of(app, quiet.id) == {
        "member_id": str(quiet.id),
        "unread": 0,
        "items": [],
        "next_cursor": None,
    }
    with fresh_db.unit_of_work(write=False) as session:
        assert session.scalars(select(InboxMessage)).all() == []
        channels = set(session.scalars(select(Delivery.channel)))
    assert channels == {"email"}  # e-mail consent was not withdrawn
