"""The rewards, redemption and coupon endpoints over HTTP: scopes, status codes, problem
details, idempotency, and the checkout listing coupons and rewards."""

from __future__ import annotations

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from tests.support.rewards_api import cart, create, redeem, rich
from treu.db.session import Database
from treu.kit import codes


def test_the_catalogue_is_managed_by_admins(api: Api, db: Database) -> None:
    prog = f.programme(db)
    reward = create(api, prog, stock=10, per_member_limit=2, min_order_minor=2000)
    assert reward["stock"] == {"total": 10, "left": 10}
    assert reward["currency"] == "EUR"
    assert reward["policies"] == {
        "refund_on_cancel": True,
        "refund_on_expiry": False,
        "restore_on_return": True,
    }
    url = f"/v1/programmes/{prog.slug}/rewards"
    assert_problem(
        api.client.post(url, json={**reward}, headers=api.headers("members:read")),
        403,
        "missing_scope",
    )
    listed = api.client.get(url, headers=api.headers("members:read"))
    assert [r["id"] for r in listed.json()["items"]] == [reward["id"]]
    one = api.client.get(f"/v1/rewards/{reward['id']}", headers=api.headers("members:read"))
    assert one.json() == reward
    other = f.programme(db)
    assert_problem(
        api.client.get(
            f"/v1/programmes/{other.slug}/rewards/{reward['id']}", headers=api.headers("admin")
        ),
        404,
        "reward_not_found",
    )
    patched = api.client.patch(
        f"{url}/{reward['id']}",
        json={"stock": 12, "points_cost": 450},
        headers=api.headers("admin"),
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["stock"], patched.json()["points_cost"]) == (
        {"total": 12, "left": 12},
        450,
    )
    assert_problem(
        api.client.post(
            url,
            json={
                "code": reward["code"],
                "type": "amount_discount",
                "name": {"en": "x"},
                "points_cost": 1,
                "value_minor": 1,
            },
            headers=api.headers("admin"),
        ),
        409,
        "reward_exists",
    )
    bad = assert_problem(
        api.client.post(
            url,
            json={"code": "pct", "type": "percent_discount", "name": {"en": "x"}, "points_cost": 1},
            headers=api.headers("admin"),
        ),
        422,
        "validation_error",
    )
    assert "needs percent_bp" in bad["detail"]
    archived = api.client.delete(f"{url}/{reward['id']}", headers=api.headers("admin"))
    assert archived.json()["status"] == "archived"
    assert api.client.get(url, headers=api.headers("admin")).json()["items"] == []
    assert_problem(
        api.client.get(
            f"/v1/rewards/{'0' * 8}-0000-7000-8000-{'0' * 12}", headers=api.headers("admin")
        ),
        404,
        "reward_not_found",
    )


def test_redeeming_over_http(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog, 1200)
    reward = create(api, prog, stock=1)
    other = create(api, prog)

    missing = api.client.post(
        f"/v1/members/{anna.id}/redemptions",
        json={"reward_id": reward["id"]},
        headers=api.headers("members:write"),
    )
    body = assert_problem(missing, 422, "validation_error")
    assert body["errors"][0]["field"] == "header.idempotency-key"

    first = redeem(api, anna, reward, "app-1")
    assert first.status_code == 201, first.text
    assert codes.is_valid(first.json()["coupon"]["code"])
    again = redeem(api, anna, reward, "app-1")
    assert (again.status_code, again.json()) == (200, first.json())
    assert_problem(redeem(api, anna, other, "app-1"), 409, "idempotency_conflict")
    sold = assert_problem(redeem(api, anna, reward, "app-2"), 409, "out_of_stock")
    assert sold["reasons"][0]["code"] == "out_of_stock"
    poor = assert_problem(
        redeem(api, anna, create(api, prog, points_cost=5000), "app-3"), 422, "insufficient_points"
    )
    assert (poor["needed"], poor["available"]) == (5000, 700)
    assert_problem(
        api.client.post(
            f"/v1/members/{anna.id}/redemptions",
            json={"reward_id": reward["id"]},
            headers=api.headers("members:read") | {"Idempotency-Key": "x"},
        ),
        403,
        "missing_scope",
    )

    ledger = api.client.get(
        f"/v1/members/{anna.id}/ledger?lang=de", headers=api.headers("members:read")
    ).json()
    assert ledger["items"][0]["explanation"] == "Eingelöst: 5-€-Gutschein: -500"

    listed = api.client.get(
        f"/v1/members/{anna.id}/redemptions?lang=de", headers=api.headers("members:read")
    ).json()
    assert [r["id"] for r in listed["items"]] == [first.json()["id"]]
    assert listed["items"][0]["coupon"]["status"] == "active"
    coupons = api.client.get(
        f"/v1/members/{anna.id}/coupons?status=active", headers=api.headers("members:read")
    ).json()
    assert [c["code"] for c in coupons["items"]] == [first.json()["coupon"]["code"]]

    cancelled = api.client.post(
        f"/v1/redemptions/{first.json()['id']}/cancel",
        json={"reason": "changed my mind"},
        headers=api.headers("members:write"),
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["coupon"]["status"] == "cancelled"
    again = api.client.post(
        f"/v1/redemptions/{first.json()['id']}/cancel", headers=api.headers("members:write")
    )
    assert again.json() == cancelled.json()
    balance = api.client.get(f"/v1/members/{anna.id}/balance", headers=api.headers("members:read"))
    assert balance.json()["available"] == 1200
    assert api.client.get(f"/v1/rewards/{reward['id']}", headers=api.headers("admin")).json()[
        "stock"
    ] == {"total": 1, "left": 1}


def test_what_a_member_can_redeem_in_german(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog, 600)
    cheap = create(api, prog)
    dear = create(api, prog, points_cost=1000, name={"de": "Kaffeemaschine", "en": "Coffee maker"})
    r = api.client.get(
        f"/v1/members/{anna.id}/rewards?lang=de", headers=api.headers("members:read")
    )
    assert r.status_code == 200, r.text
    found = r.json()
    assert [i["id"] for i in found["redeemable"]] == [cheap["id"]]
    assert found["locked"][0]["id"] == dear["id"]
    assert found["locked"][0]["name"] == "Kaffeemaschine"
    assert found["locked"][0]["reasons"] == [
        {
            "code": "insufficient_points",
            "text": "Noch 400 Punkte nötig",
            "params": {"missing_points": 400, "points_cost": 1000, "available_points": 600},
        }
    ]


def test_coupons_at_the_till(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog)
    reward = create(api, prog, type="percent_discount", value_minor=None, percent_bp=1000)
    code = redeem(api, anna, reward, "k").json()["coupon"]["code"]
    typed = code.lower().replace("-", " ")

    checked = api.client.post(
        "/v1/coupons/validate",
        json={"code": typed, "cart": cart(prog, anna, ("a", 2, 1005)), "lang": "de"},
        headers=api.headers("events:write"),
    )
    assert checked.status_code == 200, checked.text
    assert (checked.json()["applicable"], checked.json()["discount_minor"]) == (True, 201)
    assert checked.json()["coupon"]["summary"] == "10 % Rabatt"

    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    assert_problem(
        api.client.post(
            "/v1/coupons/validate",
            json={"code": typo, "cart": cart(prog, anna, ("a", 1, 100))},
            headers=api.headers("events:write"),
        ),
        422,
        "invalid_coupon_code",
    )

    use = {
        "code": code,
        "order_id": "web-1",
        "programme": prog.slug,
        "cart": cart(prog, None, ("a", 1, 2000)),
    }
    first = api.client.post("/v1/coupons/redeem", json=use, headers=api.headers("events:write"))
    assert first.status_code == 201, first.text
    assert first.json()["discount_minor"] == 200
    again = api.client.post("/v1/coupons/redeem", json=use, headers=api.headers("events:write"))
    assert (again.status_code, again.json()) == (200, first.json())
    assert_problem(
        api.client.post(
            "/v1/coupons/redeem",
            json={**use, "order_id": "web-2"},
            headers=api.headers("events:write"),
        ),
        409,
        "coupon_already_used",
    )
    shown = api.client.get(f"/v1/coupons/{typed}", headers=api.headers("members:read"))
    assert (shown.json()["status"], shown.json()["order_id"]) == ("used", "web-1")

    qr = api.client.get(f"/v1/coupons/{code}/qr.svg", headers=api.headers("members:read"))
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.startswith("<svg")
    assert_problem(
        api.client.get(
            f"/v1/coupons/{codes.new_code()}/qr.svg", headers=api.headers("members:read")
        ),
        404,
        "coupon_not_found",
    )


def test_the_checkout_lists_usable_coupons_and_redeemable_rewards(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog, 700)
    voucher = create(api, prog, min_order_minor=1000)
    coffee = create(api, prog, type="free_product", value_minor=None, sku="7002", points_cost=200)
    create(api, prog, points_cost=5000)  # too dear: not offered
    code = redeem(api, anna, voucher, "k").json()["coupon"]["code"]  # 200 points left
    body = cart(prog, anna, ("7002", 1, 899), ("4001", 2, 129))
    body["lang"] = "de"
    r = api.client.post("/v1/checkout/evaluate", json=body, headers=api.headers("events:write"))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [(c["code"], c["discount_minor"]) for c in answer["coupons"]] == [(code, 500)]
    assert answer["coupons"][0]["summary"] == "5,00\xa0€ Rabatt ab 10,00\xa0€"
    assert [(o["id"], o["discount_minor"]) for o in answer["rewards"]] == [(coffee["id"], 899)]
    small = cart(prog, anna, ("4001", 1, 129))
    r = api.client.post("/v1/checkout/evaluate", json=small, headers=api.headers("events:write"))
    assert r.json()["coupons"] == []  # below the minimum order value
    anonymous = cart(prog, None, ("7002", 1, 899))
    r = api.client.post(
        "/v1/checkout/evaluate", json=anonymous, headers=api.headers("events:write")
    )
    assert (r.json()["coupons"], r.json()["rewards"]) == ([], [])


def test_a_donation_worth_its_points_is_summarised_everywhere(api: Api, db: Database) -> None:
    """A donation reward without a fixed amount gives what its points are worth: the
    catalogue, the checkout and the member's redemptions say so instead of failing."""
    prog = f.programme(db)
    r = api.client.post(
        f"/v1/programmes/{prog.slug}/charities",
        json={"code": "tafel", "name": {"de": "Tafel", "en": "Food bank"}},
        headers=api.headers("admin"),
    )
    assert r.status_code == 201, r.text
    gift = create(api, prog, type="donation", value_minor=None, charity="tafel", points_cost=400)
    anna = rich(db, prog, 1000)

    listed = api.client.get(f"/v1/members/{anna.id}/rewards", headers=api.headers("members:read"))
    assert listed.status_code == 200, listed.text
    [offer] = [x for x in listed.json()["redeemable"] if x["id"] == gift["id"]]
    assert offer["summary"] == "€4.00 donation"  # 400 points at the default cent a point

    body = cart(prog, anna, ("4001", 1, 129)) | {"lang": "de"}
    r = api.client.post("/v1/checkout/evaluate", json=body, headers=api.headers("events:write"))
    assert r.status_code == 200, r.text

    assert redeem(api, anna, gift, "d-1").status_code == 201
    done = api.client.get(f"/v1/members/{anna.id}/redemptions", headers=api.headers("members:read"))
    assert done.status_code == 200, done.text
    assert done.json()["items"][0]["reward"]["summary"] == "Donation to tafel"
