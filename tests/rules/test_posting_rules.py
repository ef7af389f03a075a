"""Every earn posting names the rule and version that produced it over HTTP — the base
rate and tier multipliers included — in the event's answer and on the ledger page."""

from __future__ import annotations

from datetime import timedelta

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.time import utc_now


def test_postings_name_their_rule(api: Api, db: Database) -> None:
    prog = f.tiered(db, ladder=[f.LADDER[1] | {"threshold": 0, "rank": 0}])  # everyone x1.25
    organic = f.rule(db, prog, **f.ORGANIC_X2)
    who = f.member(db, prog)
    at = utc_now() - timedelta(minutes=5)
    purchase = f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=at)
    writer = api.headers("events:write")
    bought = api.client.post("/v1/events", json=purchase, headers=writer)
    assert bought.status_code == 201, bought.text
    by_rule = {p["rule"]["id"]: p for p in bought.json()["postings"]}
    assert set(by_rule) == {"base", str(organic.id), "tier.silber"}
    assert by_rule["base"]["rule"] == {"id": "base", "version": 1}
    assert by_rule[str(organic.id)]["rule"] == {"id": str(organic.id), "version": 1}
    assert by_rule["tier.silber"]["rule"]["version"] >= 1
    assert by_rule[str(organic.id)]["explanation"].startswith("Organic x2")

    back = {
        "id": f.unique("ret"),
        "type": "return",
        "programme": prog.slug,
        "member": f.member_ref(who),
        "occurred_at": utc_now().isoformat(),
        "original_event_id": purchase["id"],
        "lines": [{"sku": "7002", "quantity": 1}],
    }
    returned = api.client.post("/v1/events", json=back, headers=writer)
    assert returned.status_code == 201, returned.text
    assert all("rule" not in p for p in returned.json()["postings"])  # no rule made these

    page = api.client.get(f"/v1/members/{who.id}/ledger", headers=api.headers("members:read"))
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    earned = {p["id"]: p["rule"] for p in items if p["kind"] == "earn"}
    assert earned == {p["id"]: p["rule"] for p in bought.json()["postings"]}
    assert [p["rule"] for p in items if p["kind"] != "earn"] == [None] * (len(items) - 3)
