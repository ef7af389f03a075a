"""The journeys API: settings per kind (admin), their stats, quiet hours."""

from __future__ import annotations

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from treu.db.session import Database
from treu.journeys.daily import run_daily
from treu.journeys.schemas import JourneyIn, JourneyOut, QuietHours


def test_journeys_are_listed_set_and_counted(db: Database, api: Api) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    base = f"/v1/programmes/{prog.slug}"
    r = api.client.get(f"{base}/journeys", headers=api.headers("members:read"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert [j["kind"] for j in body["journeys"]][:3] == ["welcome", "first_purchase", "birthday"]
    assert not any(j["enabled"] for j in body["journeys"])
    example = JourneyIn.model_json_schema()["examples"][0]
    r = api.client.put(f"{base}/journeys/birthday", json=example, headers=api.headers("admin"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["enabled"] is True
    assert out["params"] == {"days_before": 3}
    assert out["message_kind"] == "marketing"
    assert set(out) == set(JourneyOut.model_json_schema()["examples"][0])
    run_daily(db)
    r = api.client.put(
        f"{base}/journeys/birthday",
        json={"enabled": True, "params": {"inactive_days": 3}},
        headers=api.headers("admin"),
    )
    assert_problem(r, 422, "invalid_journey")
    # A message Treu cannot word, for the journey or for its second step, is refused when
    # it is set (it once stopped the whole outbox when the journey fired).
    for kind, template in (("birthday", "geburtstag"), ("inactivity", "birthday")):
        r = api.client.put(
            f"{base}/journeys/{kind}",
            json={"enabled": True, "template": template},
            headers=api.headers("admin"),
        )
        assert "no message template" in assert_problem(r, 422, "invalid_journey")["detail"]
    r = api.client.put(
        f"{base}/journeys/birthday", json=example, headers=api.headers("events:write")
    )
    assert r.status_code == 403
    r = api.client.put(
        f"{base}/quiet-hours",
        json=QuietHours.model_json_schema()["examples"][0] | {"start": "22:00"},
        headers=api.headers("admin"),
    )
    assert r.json() == {"start": "22:00", "end": "08:00"}
    r = api.client.get(f"{base}/journeys", headers=api.headers("members:read"))
    assert r.json()["quiet_hours"]["start"] == "22:00"
