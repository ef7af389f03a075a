"""``GET /v1/outbox``: depth, failures and lag, the deliveries by state, and a dead
delivery retried by hand."""

from __future__ import annotations

from tests import factories as f
from tests.api_helpers import assert_problem, make_api
from tests.support.delivery import Clock, Enrolments, Receiver, enrol
from treu.db.session import Database
from treu.delivery.service import Backoff
from treu.delivery.worker import Deliverer
from treu.kit.time import utc_now

ONE_TRY = Backoff(base_seconds=1, cap_seconds=1, max_attempts=1)


def test_outbox_shows_depth_dead_deliveries_and_retries_them(fresh_db: Database) -> None:
    api = make_api(fresh_db)
    admin = api.headers("admin")
    prog = f.programme(fresh_db)
    ok, broken = enrol(fresh_db, prog, 2)
    clock = Clock()
    r = api.client.get("/v1/outbox", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["depth"]["undispatched"] >= 2
    assert r.json()["items"] == []

    receiver = Receiver(fail={str(broken): 1})
    worker = Deliverer(fresh_db, [Enrolments(receiver, prog.id)], clock=clock, backoff=ONE_TRY)
    try:
        worker.run_once()
        body = api.client.get("/v1/outbox", headers=admin).json()
        assert body["depth"] | {"lag_seconds": 0} == {
            "undispatched": 0,
            "pending": 0,
            "failed": 0,
            "dead": 1,
            "delivered": 1,
            "lag_seconds": 0,
        }
        dead = api.client.get("/v1/outbox?status=dead", headers=admin).json()["items"]
        assert [(d["member_id"], d["attempts"], d["last_error"]) for d in dead] == [
            (str(broken), 1, "receiver said 503")
        ]
        assert dead[0]["next_attempt_at"] is None
        page = api.client.get("/v1/outbox?limit=1", headers=admin).json()
        assert len(page["items"]) == 1
        rest = api.client.get(f"/v1/outbox?limit=1&cursor={page['next_cursor']}", headers=admin)
        assert len(rest.json()["items"]) == 1
        assert rest.json()["next_cursor"] is None

        again = api.client.post(f"/v1/outbox/deliveries/{dead[0]['id']}/retry", headers=admin)
        assert again.status_code == 200, again.text
        assert (again.json()["status"], again.json()["attempts"]) == ("pending", 0)
        clock.now = utc_now()  # the retry made it due on the real clock
        assert worker.run_once().sent == 1
    finally:
        worker.close()
    assert sorted(receiver.got.values()) == [1, 1]
    delivered = api.client.get("/v1/outbox?status=delivered", headers=admin).json()["items"]
    assert {d["member_id"] for d in delivered} == {str(ok), str(broken)}
    assert_problem(
        api.client.post(f"/v1/outbox/deliveries/{dead[0]['id']}/retry", headers=admin),
        409,
        "delivery_not_dead",
    )
    assert_problem(
        api.client.post(
            "/v1/outbox/deliveries/0193a1d2-0000-7000-8000-000000000000/retry", headers=admin
        ),
        404,
        "delivery_not_found",
    )
    assert_problem(
        api.client.get("/v1/outbox?cursor=nonsense", headers=admin), 422, "validation_error"
    )
    assert api.client.get("/v1/outbox", headers=api.headers("members:read")).status_code == 403
