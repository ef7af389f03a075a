"""Webhook endpoints in the console over HTTP: admins only (every other role refused on
the server for each page and action), the secret shown once after creating and after a
rotation, SSRF refusal shown on the form outside development mode, events edited,
disabled with its reason and enabled again, and the delivery log paged newest first
with redelivery — all through the service the API uses, and audited."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select, update

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.delivery.models import Delivery, DeliveryStatus
from treu.delivery.service import deliveries
from treu.kit.time import utc_now
from treu.webhooks.models import WebhookEndpoint
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import CHANNEL, webhooks

PUBLIC = "https://93.184.215.14/hooks/treu"
"""A public address written as one: nothing to resolve, allowed in production mode."""
SECRET = r"whsec_[A-Za-z0-9+/=]+"


def _endpoint(db: Database, **fields: object) -> uuid.UUID:
    with db.unit_of_work() as session:
        data = WebhookIn.model_validate({"url": PUBLIC, "events": ["points.earned"], **fields})
        endpoint, _ = webhooks.create(session, data=data, actor="test", allow_private=False)
        return endpoint.id


def _endpoints_at(db: Database, url: str) -> list[WebhookEndpoint]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.url == url)))


def _actions(db: Database, endpoint_id: uuid.UUID) -> list[tuple[str, str]]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_id == str(endpoint_id))
            .order_by(AuditEvent.id)
        )
        return [(row.actor, row.action) for row in rows]


def test_only_admins_manage_webhooks(db: Database) -> None:
    endpoint_id = _endpoint(db)
    base = f"/admin/webhooks/{endpoint_id}"
    posts = {
        "/admin/webhooks": {"url": PUBLIC + "/forged", "events": ["points.earned"]},
        f"{base}/edit": {"events": ["reward.redeemed"]},
        f"{base}/enabled": {"enabled": "false"},
        f"{base}/rotate": {},
        f"{base}/deliveries/{uuid.uuid4()}/redeliver": {},
    }
    for role in ("marketing", "support", "analyst"):
        web, _ = signed_in(db, role)
        home = web.get("/admin")
        assert 'href="/admin/webhooks"' not in home.text
        csrf = csrf_of(home.text)
        assert web.get("/admin/webhooks").status_code == 403
        assert web.get(base).status_code == 403
        for path, data in posts.items():
            answer = web.post(path, data={"csrf": csrf, **data}, follow_redirects=False)
            assert answer.status_code == 403, (role, path)
    assert _endpoints_at(db, PUBLIC + "/forged") == []
    assert _actions(db, endpoint_id) == [("test", "webhook.created")]
    admin, _ = signed_in(db, "admin")
    assert 'href="/admin/webhooks"' in admin.get("/admin").text


def test_create_shows_the_secret_once_with_the_verification_hint(db: Database) -> None:
    web, email = signed_in(db, "admin")
    page = web.get("/admin/webhooks")
    assert page.status_code == 200
    url = f"{PUBLIC}/{uuid.uuid4().hex[:8]}"
    stale = web.post(
        "/admin/webhooks", data={"csrf": "old", "url": url, "events": ["points.earned"]}
    )
    assert stale.status_code == 403
    assert _endpoints_at(db, url) == []
    created = web.post(
        "/admin/webhooks",
        data={
            "csrf": csrf_of(page.text),
            "url": url,
            "description": "Shop",
            "events": ["points.earned", "reward.redeemed"],
        },
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    [endpoint] = _endpoints_at(db, url)
    assert created.headers["location"] == f"/admin/webhooks/{endpoint.id}?done=created"
    shown = web.get(created.headers["location"])
    [secret] = re.findall(SECRET, shown.text)
    assert secret == endpoint.secret
    assert "standardwebhooks" in shown.text  # how to verify
    again = web.get(created.headers["location"])
    assert re.findall(SECRET, again.text) == []
    listed = web.get("/admin/webhooks")
    assert url in listed.text
    assert "points.earned, reward.redeemed" in listed.text
    assert secret not in listed.text
    assert _actions(db, endpoint.id) == [(f"staff:{email}", "webhook.created")]


def test_a_url_that_is_not_public_is_refused_in_place(db: Database) -> None:
    web, _ = signed_in(db, "admin")  # production mode, as the app is built by default
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex[:8]}"
    refused = web.post(
        "/admin/webhooks",
        data={
            "csrf": csrf_of(web.get("/admin/webhooks").text),
            "url": url,
            "events": ["points.earned"],
        },
    )
    assert refused.status_code == 422
    assert "public addresses only" in refused.text
    assert f'value="{url}"' in refused.text  # the form keeps what was typed
    assert re.search(r'value="points.earned" checked', refused.text)
    assert _endpoints_at(db, url) == []
    none = web.post(
        "/admin/webhooks", data={"csrf": csrf_of(refused.text), "url": PUBLIC + "/none"}
    )
    assert none.status_code == 422
    assert "mindestens ein Ereignis" in none.text
    blank = web.post(
        "/admin/webhooks",
        data={"csrf": csrf_of(refused.text), "url": " ", "events": ["points.earned"]},
    )
    assert blank.status_code == 422
    assert "die die Ereignisse empfangen soll" in blank.text
    # a forged form the input model refuses is shown as a refusal, not a crash
    flood = web.post(
        "/admin/webhooks",
        data={"csrf": csrf_of(refused.text), "url": PUBLIC, "events": ["points.earned"] * 101},
    )
    assert flood.status_code == 422
    assert "events" in flood.text


def test_edit_disable_enable_and_rotate(db: Database) -> None:
    web, email = signed_in(db, "admin")
    endpoint_id = _endpoint(db)
    base = f"/admin/webhooks/{endpoint_id}"
    csrf = csrf_of(web.get(base).text)

    edited = web.post(
        f"{base}/edit",
        data={"csrf": csrf, "description": "Till", "events": ["reward.redeemed", "tier.changed"]},
        follow_redirects=False,
    )
    assert edited.status_code == 303
    unknown = web.post(f"{base}/edit", data={"csrf": csrf, "events": ["no.such"]})
    assert unknown.status_code == 422
    assert "no.such" in unknown.text
    with db.unit_of_work(write=False) as session:
        assert webhooks.get(session, endpoint_id).events == ["reward.redeemed", "tier.changed"]

    off = web.post(f"{base}/enabled", data={"csrf": csrf, "enabled": "false"})
    assert off.status_code == 200
    status = re.search(r'data-testid="webhook-status">([^<]*)<', off.text)
    assert status is not None
    assert f"disabled by staff:{email}" in status.group(1)
    listed = web.get("/admin/webhooks")
    assert f"disabled by staff:{email}" in listed.text
    on = web.post(f"{base}/enabled", data={"csrf": csrf, "enabled": "true"})
    assert "disabled by" not in on.text

    with db.unit_of_work(write=False) as session:
        before = webhooks.get(session, endpoint_id).secret
    rotated = web.post(f"{base}/rotate", data={"csrf": csrf}, follow_redirects=False)
    assert rotated.status_code == 303
    shown = web.get(rotated.headers["location"])
    [secret] = re.findall(SECRET, shown.text)
    with db.unit_of_work(write=False) as session:
        endpoint = webhooks.get(session, endpoint_id)
        assert (endpoint.secret, endpoint.previous_secret) == (secret, before)
        assert endpoint.previous_secret_expires_at is not None
    assert "signiert noch bis" in shown.text
    assert re.findall(SECRET, web.get(base).text) == []
    assert [action for _, action in _actions(db, endpoint_id)] == [
        "webhook.created",
        "webhook.updated",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.secret_rotated",
    ]


def _deliveries(db: Database, endpoint_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    prog = f.programme(db)
    with db.unit_of_work() as session:
        for i in range(count):
            deliveries.add(
                session,
                [
                    Planned(
                        channel=CHANNEL,
                        target=str(endpoint_id),
                        dedupe_key=f"webhook:{endpoint_id}:{i}",
                        event_type=f"points.earned.{i:02d}",
                        payload={},
                        programme_id=prog.id,
                    )
                ],
                now=utc_now(),
            )
        return list(
            session.scalars(
                select(Delivery.id).where(Delivery.target == str(endpoint_id)).order_by(Delivery.id)
            )
        )


def test_the_delivery_log_pages_newest_first_and_redelivers(db: Database) -> None:
    web, email = signed_in(db, "admin")
    endpoint_id = _endpoint(db)
    ids = _deliveries(db, endpoint_id, 25)
    dead = ids[3]
    with db.unit_of_work() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == dead)
            .values(status="dead", attempts=8, last_status=503, last_error="HTTP 503: busy")
        )
    base = f"/admin/webhooks/{endpoint_id}"
    first = web.get(base)
    events = re.findall(r"points\.earned\.(\d\d)", first.text)
    assert events == [f"{i:02d}" for i in range(24, 4, -1)]  # 20, newest first
    older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', first.text)
    assert older is not None
    second = web.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r"points\.earned\.(\d\d)", second.text) == ["04", "03", "02", "01", "00"]
    assert 'data-testid="older"' not in second.text
    assert "HTTP 503" in second.text
    assert "HTTP 503: busy" in second.text
    assert f"msg_{dead.hex}" in second.text  # the webhook-id

    csrf = csrf_of(second.text)
    pending = web.post(f"{base}/deliveries/{ids[0]}/redeliver", data={"csrf": csrf})
    assert pending.status_code == 422
    assert "pending" in pending.text
    again = web.post(
        f"{base}/deliveries/{dead}/redeliver", data={"csrf": csrf}, follow_redirects=False
    )
    assert (again.status_code, again.headers["location"]) == (303, f"{base}?done=redelivered")
    with db.unit_of_work(write=False) as session:
        row = deliveries.get(session, dead)
        assert (row.status, row.attempts) == (DeliveryStatus.pending.value, 0)
    assert (f"staff:{email}", "webhook.redelivered") in _actions(db, endpoint_id)
    forged = web.post(f"{base}/deliveries/{dead}/redeliver", data={"csrf": "nope"})
    assert forged.status_code == 403


def test_the_list_shows_each_endpoints_last_delivery(db: Database) -> None:
    web, _ = signed_in(db, "admin")
    url = f"{PUBLIC}/{uuid.uuid4().hex[:8]}"
    endpoint_id = _endpoint(db, url=url)
    [delivery] = _deliveries(db, endpoint_id, 1)
    with db.unit_of_work() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery)
            .values(status="failed", attempts=1, last_status=502)
        )
    page = web.get("/admin/webhooks")
    row = re.search(rf"{re.escape(url)}.*?</tr>", page.text, re.S)
    assert row is not None
    assert "failed" in row.group(0)
    assert "HTTP 502" in row.group(0)
