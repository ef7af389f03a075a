"""The rewards endpoints over HTTP: a reward created by an admin, a member with points,
a redemption with an idempotency key, a checkout cart."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme


def create(api: Api, prog: Programme, **spec: Any) -> dict[str, Any]:
    body = {
        "code": f.unique("r"),
        "type": "amount_discount",
        "name": {"de": "5-€-Gutschein", "en": "€5 voucher"},
        "points_cost": 500,
        "value_minor": 500,
        **spec,
    }
    r = api.client.post(
        f"/v1/programmes/{prog.slug}/rewards", json=body, headers=api.headers("admin")
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def rich(db: Database, prog: Programme, points: int = 5000) -> Member:
    who = f.member(db, prog)
    f.earn(db, prog, who, points, at=utc_now())
    return who


def redeem(api: Api, who: Member, reward: dict[str, Any], key: str) -> Any:
    return api.client.post(
        f"/v1/members/{who.id}/redemptions",
        json={"reward_id": reward["id"]},
        headers=api.headers("members:write") | {"Idempotency-Key": key},
    )


def cart(prog: Programme, who: Member | None, *lines: tuple[str, int, int]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "programme": prog.slug,
        "channel": "pos",
        "currency": "EUR",
        "lines": [{"sku": s, "quantity": q, "unit_price_minor": p} for s, q, p in lines],
    }
    if who is not None:
        body["member"] = {"card_number": who.card_number}
    return body
