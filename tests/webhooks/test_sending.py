"""Webhooks end to end: events ingested and committed reach a real HTTP receiver on
loopback, signed by the Standard Webhooks specification (checked with its reference
library), retried with the same ``webhook-id`` until they arrive, redelivered by hand;
an endpoint that keeps failing is disabled; a rotated secret signs alongside the new
one for a day; a rolled-back change sends nothing.

Each test has a database of its own (``fresh_db``): the deliverer plans the whole outbox,
and the endpoints of one test must not see another's events. The app and the channel
run in development mode, where loopback receivers are allowed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpcore
import httpx
import pytest
import time_machine
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests import factories as f
from tests.api_helpers import assert_problem, make_api
from tests.support.receiver import Received, Receiver, running_receiver
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.channel import Claimed, SendFailed
from treu.delivery.service import Backoff, deliveries
from treu.delivery.worker import Deliverer, Round
from treu.kit.time import iso, utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.outbox.service import outbox
from treu.programmes.service import programmes
from treu.webhooks import urls
from treu.webhooks.channel import WebhookChannel, guarded_transport
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import EndpointUnavailable, webhooks

BACKOFF = Backoff(base_seconds=60, cap_seconds=60, max_attempts=10)
"""A retry waits 30 to 60 seconds: a test travels two minutes to the next one."""
LATER = timedelta(minutes=2)


class Hooks:
    """One test's world: a database, a receiver, a programme with a member, the API in
    development mode and a deliverer to run."""

    def __init__(self, db: Database, receiver: Receiver) -> None:
        self.db = db
        self.receiver = receiver
        self.settings = Settings(database_url=db.url, env="development")
        self.api = make_api(db, env="development")
        self.admin = self.api.headers("admin")
        self.prog = f.programme(db)
        self.member = f.member(db, self.prog)
        with db.unit_of_work() as session:  # what happened before a test's endpoints
            deliveries.dispatch(session, [], now=utc_now())

    def register(self, *events: str, **fields: Any) -> dict[str, Any]:
        body = {"url": self.receiver.url, "events": list(events or ["points.earned"])}
        body.update(fields)
        r = self.api.client.post("/v1/webhooks", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def purchase(self, amount_minor: int = 1000) -> None:
        f.ingest_one(self.db, f.purchase_payload(self.prog, self.member, amount_minor=amount_minor))

    def deliver(
        self,
        *,
        settings: Settings | None = None,
        backoff: Backoff = BACKOFF,
        resolve: urls.Resolver = urls.system_resolver,
        **options: Any,
    ) -> Round:
        channel = WebhookChannel(settings or self.settings, self.db, resolve=resolve)
        deliverer = Deliverer(self.db, [channel], backoff=backoff, threads=2, **options)
        try:
            return deliverer.run_once()
        finally:
            deliverer.close()

    def endpoint(self, webhook: dict[str, Any]) -> dict[str, Any]:
        r = self.api.client.get(f"/v1/webhooks/{webhook['id']}", headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def deliveries(self, webhook: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
        r = self.api.client.get(
            f"/v1/webhooks/{webhook['id']}/deliveries", params=params, headers=self.admin
        )
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def redeliver(self, webhook: dict[str, Any], delivery_id: str) -> httpx.Response:
        return self.api.client.post(
            f"/v1/webhooks/{webhook['id']}/deliveries/{delivery_id}/redeliver",
            headers=self.admin,
        )


@pytest.fixture
def hooks(fresh_db: Database) -> Iterator[Hooks]:
    with running_receiver() as receiver:
        yield Hooks(fresh_db, receiver)


def verify(secret: str, request: Received) -> Any:
    return Webhook(secret).verify(request.body, request.headers)


def test_a_purchase_reaches_the_receiver_signed(hooks: Hooks) -> None:
    webhook = hooks.register("points.earned", "reward.redeemed")
    hooks.purchase(1000)
    done = hooks.deliver()
    assert (done.sent, done.failed, done.dead) == (1, 0, 0)

    [request] = hooks.receiver.requests  # member.enrolled was not subscribed to
    assert request.path == "/hooks/treu"
    with hooks.db.unit_of_work(write=False) as session:
        [earned] = outbox.messages(session, member_id=hooks.member.id, types=["points.earned"])
    assert verify(webhook["secret"], request) == {
        "type": "points.earned",
        "timestamp": iso(earned.occurred_at),
        "data": {
            "programme": hooks.prog.slug,
            "member_id": str(hooks.member.id),
            "points": 10,
            "event_id": earned.payload["event_id"],
        },
    }
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("Treu-Webhooks/")
    assert abs(int(headers["webhook-timestamp"]) - utc_now().timestamp()) < 60
    [delivery] = hooks.deliveries(webhook)
    assert headers["webhook-id"] == delivery["message_id"] == "msg_" + uuid.UUID(delivery["id"]).hex
    assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == (
        "delivered",
        1,
        "points.earned",
    )
    assert delivery["delivered_at"] is not None

    # The library refuses a body changed on the way, a foreign secret, and (five
    # minutes on) a replay of the same request.
    changed = request.body.replace(b'"points":10', b'"points":1000')
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(webhook["secret"]).verify(changed, headers)
    with time_machine.travel(utc_now() + timedelta(minutes=6), tick=True):
        with pytest.raises(WebhookVerificationError, match="too old"):
            verify(webhook["secret"], request)

    # Nothing is sent twice.
    assert hooks.deliver() == Round()
    assert len(hooks.receiver.requests) == 1


def test_failures_are_retried_with_the_same_id_and_the_same_body(hooks: Hooks) -> None:
    webhook = hooks.register()
    hooks.receiver.answer(500, 503)
    hooks.purchase()
    start = utc_now()
    assert hooks.deliver().failed == 1
    [failed] = hooks.deliveries(webhook)
    assert (failed["status"], failed["attempts"], failed["last_status"]) == ("failed", 1, 500)
    assert failed["last_error"] == "HTTP 500: not today"
    assert hooks.endpoint(webhook)["consecutive_failures"] == 1
    with time_machine.travel(start + LATER, tick=True):
        assert hooks.deliver().failed == 1
    with time_machine.travel(start + 2 * LATER, tick=True):
        assert hooks.deliver().sent == 1
        first, second, third = hooks.receiver.requests
        verify(webhook["secret"], third)
    assert {r.headers["webhook-id"] for r in (first, second, third)} == {
        first.headers["webhook-id"]
    }
    assert first.body == second.body == third.body
    stamps = [int(r.headers["webhook-timestamp"]) for r in (first, second, third)]
    assert stamps == sorted(stamps)
    assert stamps[0] < stamps[2]  # each try is signed anew
    [delivered] = hooks.deliveries(webhook)
    assert (delivered["status"], delivered["attempts"], delivered["last_error"]) == (
        "delivered",
        3,
        None,
    )
    assert delivered["last_status"] == 200  # the answer of the try that arrived
    assert hooks.endpoint(webhook)["consecutive_failures"] == 0  # an arrival resets it


def test_a_delivered_webhook_shows_the_receivers_status(hooks: Hooks) -> None:
    webhook = hooks.register()
    hooks.receiver.answer(202)
    hooks.purchase()
    assert hooks.deliver().sent == 1
    [delivered] = hooks.deliveries(webhook)
    assert (delivered["status"], delivered["last_status"], delivered["last_error"]) == (
        "delivered",
        202,
        None,
    )


def test_an_endpoint_failing_in_a_row_is_disabled_and_can_be_enabled_again(
    hooks: Hooks,
) -> None:
    settings = Settings(database_url=hooks.db.url, env="development", webhook_disable_after=3)
    webhook = hooks.register()
    hooks.receiver.default_status = 503
    for amount in (1000, 2000, 3000, 4000):
        hooks.purchase(amount)
    # One delivery per round: the third failure in a row disables the endpoint, and the
    # fourth delivery, not tried yet, dies with it.
    done = hooks.deliver(settings=settings, batch=1)
    assert len(hooks.receiver.requests) == 3
    assert (done.sent, done.failed) == (0, 3)

    shown = hooks.endpoint(webhook)
    assert shown["enabled"] is False
    assert shown["consecutive_failures"] == 3
    assert shown["disabled_reason"] == "3 failures in a row; the last: HTTP 503: not today"
    assert shown["disabled_at"] is not None
    dead = hooks.deliveries(webhook)
    assert [d["status"] for d in dead] == ["dead"] * 4
    assert {d["last_error"] for d in dead} == {"endpoint disabled"}
    assert sorted(d["last_status"] or 0 for d in dead) == [0, 503, 503, 503]  # one untried
    assert hooks.deliveries(webhook, status="failed") == []
    assert len(hooks.deliveries(webhook, status="dead", limit=3)) == 3

    # A disabled endpoint is planned nothing, and refuses a redelivery.
    hooks.purchase()
    assert hooks.deliver(settings=settings).sent == 0
    assert len(hooks.deliveries(webhook)) == 4
    assert_problem(hooks.redeliver(webhook, dead[0]["id"]), 409, "webhook_disabled")

    r = hooks.api.client.patch(
        f"/v1/webhooks/{webhook['id']}", json={"enabled": True}, headers=hooks.admin
    )
    assert (r.json()["enabled"], r.json()["consecutive_failures"]) == (True, 0)
    assert r.json()["disabled_reason"] is None
    hooks.receiver.default_status = 204
    assert hooks.redeliver(webhook, dead[0]["id"]).status_code == 202
    assert hooks.deliver(settings=settings).sent == 1


def test_the_disabling_is_audited_as_the_delivery_s(hooks: Hooks) -> None:
    from sqlalchemy import select

    from treu.audit.models import AuditEvent

    settings = Settings(database_url=hooks.db.url, env="development", webhook_disable_after=1)
    webhook = hooks.register()
    hooks.receiver.default_status = 500
    hooks.purchase()
    hooks.deliver(settings=settings)
    with hooks.db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.subject_id == webhook["id"]).order_by(AuditEvent.id)
        )
        audited = [(a.actor, a.action) for a in rows]
    assert audited == [
        ("apikey:test-admin", "webhook.created"),
        ("treu.delivery", "webhook.disabled"),
    ]


def test_after_a_rotation_both_secrets_sign_for_a_day(hooks: Hooks) -> None:
    webhook = hooks.register()
    old = webhook["secret"]
    start = utc_now()
    r = hooks.api.client.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", headers=hooks.admin)
    new = r.json()["secret"]
    hooks.purchase()
    hooks.deliver()
    [request] = hooks.receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    verify(old, request)
    verify(new, request)

    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=True):
        hooks.purchase()
        hooks.deliver()
        later = hooks.receiver.requests[1]
        assert len(later.headers["webhook-signature"].split(" ")) == 1
        verify(new, later)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            verify(old, later)


def test_a_rotation_signs_the_retries_of_earlier_deliveries(hooks: Hooks) -> None:
    webhook = hooks.register()
    hooks.receiver.answer(500)
    hooks.purchase()
    start = utc_now()
    hooks.deliver()
    r = hooks.api.client.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", headers=hooks.admin)
    with time_machine.travel(start + LATER, tick=True):
        hooks.deliver()
        first, retry = hooks.receiver.requests
        assert len(first.headers["webhook-signature"].split(" ")) == 1
        verify(r.json()["secret"], retry)
        verify(webhook["secret"], retry)


def test_a_rolled_back_change_sends_nothing(hooks: Hooks) -> None:
    hooks.register("member.enrolled")

    def enrol_then_fail() -> None:
        with hooks.db.unit_of_work() as session:
            members.enrol(
                session,
                programme=programmes.get(session, hooks.prog.id),
                data=MemberCreate.model_validate(
                    {"programme": hooks.prog.slug, "email": "gone@example.com"}
                ),
                writer=ledger.writer(session),
            )
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        enrol_then_fail()
    assert hooks.deliver() == Round()
    assert hooks.receiver.requests == []

    committed = f.member(hooks.db, hooks.prog)  # the same, committed: sent
    assert hooks.deliver().sent == 1
    [request] = hooks.receiver.requests
    assert json.loads(request.body)["data"]["member_id"] == str(committed.id)


def test_a_dead_delivery_is_redelivered_with_the_same_id(hooks: Hooks) -> None:
    webhook = hooks.register()
    hooks.receiver.answer(500)
    hooks.purchase()
    assert hooks.deliver(backoff=Backoff(max_attempts=1)).dead == 1
    [dead] = hooks.deliveries(webhook, status="dead")
    assert (dead["last_status"], dead["last_error"]) == (500, "HTTP 500: not today")

    r = hooks.redeliver(webhook, dead["id"])
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["attempts"]) == ("pending", 0)
    assert_problem(hooks.redeliver(webhook, dead["id"]), 409, "webhook_delivery_pending")
    assert hooks.deliver().sent == 1
    # … and a delivered one once more (the receiver lost it)
    assert hooks.redeliver(webhook, dead["id"]).status_code == 202
    assert hooks.deliver().sent == 1
    first, second, third = hooks.receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == dead["message_id"]
    assert third.headers["webhook-id"] == dead["message_id"]
    assert first.body == third.body
    [delivered] = hooks.deliveries(webhook)
    assert (delivered["status"], delivered["attempts"]) == ("delivered", 1)

    other = hooks.register()
    r = hooks.redeliver(other, dead["id"])  # not this endpoint's
    assert_problem(r, 404, "webhook_delivery_not_found")


def test_an_endpoint_receives_its_programme_s_events_only(hooks: Hooks) -> None:
    elsewhere = f.programme(hooks.db)
    someone = f.member(hooks.db, elsewhere)
    mine = hooks.register(url=hooks.receiver.url + "/mine", programme=hooks.prog.slug)
    every = hooks.register(url=hooks.receiver.url + "/every")
    hooks.purchase()
    f.ingest_one(hooks.db, f.purchase_payload(elsewhere, someone))
    assert hooks.deliver().sent == 3
    by_path: dict[str, list[str]] = {}
    for request in hooks.receiver.requests:
        by_path.setdefault(request.path, []).append(json.loads(request.body)["data"]["programme"])
    assert by_path["/hooks/treu/mine"] == [hooks.prog.slug]
    assert sorted(by_path["/hooks/treu/every"]) == sorted([hooks.prog.slug, elsewhere.slug])
    assert mine["programme"] == hooks.prog.slug
    assert every["programme"] is None


def test_one_sender_reuses_its_connection(hooks: Hooks) -> None:
    hooks.register()
    for amount in (1000, 2000, 3000):
        hooks.purchase(amount)
    channel = WebhookChannel(hooks.settings, hooks.db)
    deliverer = Deliverer(hooks.db, [channel], backoff=BACKOFF, threads=1)
    try:
        assert deliverer.run_once().sent == 3
    finally:
        deliverer.close()
    assert len({r.client_port for r in hooks.receiver.requests}) == 1


def test_production_mode_refuses_at_send_what_resolves_inside(hooks: Hooks) -> None:
    """Registered while the name was harmless (here: in development mode), sent in
    production mode: the address is checked again when the connection is opened, and
    the delivery is dead at once."""
    webhook = hooks.register()
    hooks.purchase()
    production = Settings(database_url=hooks.db.url, env="production")
    assert hooks.deliver(settings=production).dead == 1
    assert hooks.receiver.requests == []
    [dead] = hooks.deliveries(webhook)
    assert "127.0.0.1 (loopback)" in dead["last_error"]
    assert dead["attempts"] == 1


def test_a_name_is_resolved_and_checked_when_the_connection_opens(hooks: Hooks) -> None:
    """A host name resolves through the guard, and the request names the host."""
    table = {"receiver.test": ["127.0.0.1"]}

    def resolve(host: str, port: int) -> list[urls.IPAddress]:
        import ipaddress

        return [ipaddress.ip_address(a) for a in table[host]]

    url = f"http://receiver.test:{hooks.receiver.port}/named"
    with hooks.db.unit_of_work() as session:
        _, secret = webhooks.create(
            session,
            data=WebhookIn(url=url, events=["points.earned"]),
            actor="test",
            allow_private=True,
            resolve=resolve,
        )
    hooks.purchase()
    assert hooks.deliver(resolve=resolve).sent == 1
    [request] = hooks.receiver.requests
    assert request.headers["host"] == f"receiver.test:{hooks.receiver.port}"
    verify(secret, request)

    production = Settings(database_url=hooks.db.url, env="production")
    hooks.purchase()
    assert hooks.deliver(settings=production, resolve=resolve).dead == 1
    assert len(hooks.receiver.requests) == 1


def test_a_deleted_endpoint_s_deliveries_are_dead(hooks: Hooks) -> None:
    webhook = hooks.register()
    hooks.purchase()
    channel = WebhookChannel(hooks.settings, hooks.db)
    deliverer = Deliverer(hooks.db, [channel])
    try:
        assert deliverer.dispatch() > 0  # planned, not sent
    finally:
        deliverer.close()
    r = hooks.api.client.delete(f"/v1/webhooks/{webhook['id']}", headers=hooks.admin)
    assert r.status_code == 204
    with hooks.db.unit_of_work(write=False) as session:
        [row] = deliveries.list(session, channel="webhook", target=webhook["id"])
        assert (row.status, row.last_error) == ("dead", "endpoint deleted")
    assert hooks.deliver() == Round()
    assert hooks.receiver.requests == []

    # A send that finds its endpoint gone (deleted after the claim) gives up at once.
    sender = channel.sender()
    try:
        with pytest.raises(EndpointUnavailable, match="endpoint deleted") as raised:
            sender.send(_claimed(target=webhook["id"]))
        assert isinstance(raised.value, SendFailed)
        assert raised.value.retry is False
    finally:
        sender.close()


def _claimed(*, target: str) -> Claimed:
    return Claimed(
        id=uuid.uuid4(),
        channel="webhook",
        target=target,
        event_type="points.earned",
        payload={"type": "points.earned", "timestamp": "2026-12-06T10:00:00Z", "data": {}},
        programme_id=uuid.uuid4(),
        member_id=None,
        attempt=1,
        created_at=utc_now(),
    )


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_try(hooks: Hooks) -> None:
    import socket

    webhook = hooks.register()
    # A port that accepts connections and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        port = silent.getsockname()[1]
        r = hooks.api.client.patch(
            f"/v1/webhooks/{webhook['id']}",
            json={"url": f"http://127.0.0.1:{port}/slow"},
            headers=hooks.admin,
        )
        assert r.status_code == 200
        hooks.purchase()
        quick = Settings(database_url=hooks.db.url, env="development", webhook_timeout_seconds=0.2)
        assert hooks.deliver(settings=quick).failed == 1
    finally:
        silent.close()
    [failed] = hooks.deliveries(webhook)
    assert failed["last_error"].startswith("no answer within 0.2 s")
    assert failed["last_status"] is None


def test_the_transport_hook_still_fits_httpx() -> None:
    """``guarded_transport`` replaces httpx's connection pool (``HTTPTransport._pool``):
    this fails plainly when a new httpx has no such attribute."""
    transport = guarded_transport(httpcore.SyncBackend())
    assert isinstance(transport._pool, httpcore.ConnectionPool)
    transport.close()
