"""The portal's rewards over HTTP: what is locked and why (the service's reasons, in the
page's language), the confirmation page, redeeming once per form (double send, reload),
CSRF, errors in place, the coupon page and the coupon list; another member's coupon is
not found."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from tests import factories as f
from tests.support.admin import client
from tests.support.portal import csrf_of, signed_in
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.models import Coupon, Redemption


def _member(db: Database, prog: Programme, points: int) -> tuple[TestClient, Member]:
    who = f.member(db, prog, first_name="Ida")
    if points:
        f.earn(db, prog, who, points, at=utc_now() - timedelta(hours=1))
    return signed_in(client(db), db, who), who


def _cards(html: str) -> dict[str, str]:
    """Each reward card's HTML by its reward code."""
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'data-testid="reward" data-code="([^"]+)">.*?</li>\n', html, re.S)
    }


def _reasons(card: str) -> list[str]:
    return re.findall(r'data-reason="([^"]+)">([^<]+)<', card)


def _shown(html: str, testid: str) -> int:
    found = re.search(rf'data-testid="{testid}">([^<]+)<', html)
    assert found is not None, testid
    return int(re.sub(r"\D", "", found.group(1)))


def _form(html: str) -> dict[str, str]:
    key = re.search(r'name="key" value="([^"]+)"', html)
    assert key is not None
    return {"csrf": csrf_of(html), "key": key.group(1)}


def test_locked_rewards_say_why(db: Database) -> None:
    prog = f.tiered(db)
    web, who = _member(db, prog, 300)
    f.reward(db, prog, code="cheap", points_cost=100)
    f.reward(db, prog, code="dear", points_cost=1000)
    f.reward(db, prog, code="gold-only", points_cost=100, eligibility={"min_tier": "gold"})
    soon = (utc_now() + timedelta(days=3)).isoformat()
    f.reward(db, prog, code="soon", points_cost=100, valid_from=soon)
    gone = f.reward(db, prog, code="gone", points_cost=100, stock=1)
    rival = f.member(db, prog)
    f.earn(db, prog, rival, 100, at=utc_now() - timedelta(hours=1))
    f.redeem(db, rival, gone, now=utc_now())
    f.reward(db, prog, code="few", points_cost=100, stock=3)
    f.reward(db, prog, code="plenty", points_cost=100, stock=500)
    once = f.reward(db, prog, code="once", points_cost=10, per_member_limit=1)
    f.redeem(db, who, once, now=utc_now())

    page = web.get("/portal/rewards")
    assert page.status_code == 200
    assert _shown(page.text, "balance") == 290
    cards = _cards(page.text)
    assert set(cards) == {"cheap", "dear", "gold-only", "soon", "gone", "once", "few", "plenty"}
    assert "Nur noch 3 verfügbar" in cards["few"]
    assert 'data-testid="stock"' not in cards["plenty"]
    assert 'data-testid="stock"' not in cards["gone"]
    assert 'data-testid="redeem"' in cards["cheap"]
    assert _reasons(cards["cheap"]) == []
    assert _reasons(cards["dear"]) == [("insufficient_points", "Noch 710 Punkte nötig")]
    assert _reasons(cards["gold-only"]) == [("tier_required", "Für Mitglieder ab Gold")]
    assert _reasons(cards["gone"]) == [("out_of_stock", "Vergriffen")]
    assert _reasons(cards["once"]) == [("member_limit_reached", "Limit erreicht: 1 pro Mitglied")]
    assert [code for code, _ in _reasons(cards["soon"])] == ["not_yet_available"]
    for locked in ("dear", "gold-only", "soon", "gone", "once"):
        assert 'data-testid="redeem"' not in cards[locked]
    # in English, the same reasons in English
    web.cookies.set("treu_lang", "en")
    english = _cards(web.get("/portal/rewards").text)
    assert _reasons(english["dear"]) == [("insufficient_points", "710 more points needed")]
    # a locked reward's confirmation page offers no form, only the reasons
    confirm = web.get(f"/portal/rewards/{_id(db, prog, 'dear')}/redeem")
    assert confirm.status_code == 200
    assert 'name="key"' not in confirm.text
    assert "710 more points needed" in confirm.text


def _id(db: Database, prog: Programme, code: str) -> uuid.UUID:
    from sqlalchemy import select

    from treu.rewards.models import Reward

    with db.unit_of_work(write=False) as session:
        return session.scalars(
            select(Reward.id).where(Reward.programme_id == prog.id, Reward.code == code)
        ).one()


def test_redeem_confirms_then_redeems_once_and_shows_the_coupon(db: Database) -> None:
    prog = f.programme(db)
    web, who = _member(db, prog, 800)
    voucher = f.reward(db, prog, points_cost=500)

    confirm = web.get(f"/portal/rewards/{voucher.id}/redeem")
    assert confirm.status_code == 200
    assert _shown(confirm.text, "balance") == 800
    assert _shown(confirm.text, "balance-after") == 300
    form = _form(confirm.text)
    first = web.post(f"/portal/rewards/{voucher.id}/redeem", data=form, follow_redirects=False)
    assert first.status_code == 303
    target = first.headers["location"]
    assert target.startswith("/portal/coupons/")
    # a double click or a reload sends the same form again: the same coupon, no second burn
    again = web.post(f"/portal/rewards/{voucher.id}/redeem", data=form, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == target
    assert f.balance(db, who).available == 300
    with db.unit_of_work(write=False) as session:
        from sqlalchemy import func, select

        count = session.scalar(select(func.count()).where(Redemption.member_id == who.id))
        coupon = session.scalars(select(Coupon).where(Coupon.member_id == who.id)).one()
    assert count == 1

    page = web.get(target)
    assert page.status_code == 200
    from treu.kit.codes import format_code

    assert f'data-testid="coupon-code">{format_code(coupon.code)}<' in page.text
    assert _shown(page.text, "balance") == 300
    qr = web.get(f"/portal/coupons/{coupon.id}/qr.svg")
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg")
    # the rewards page shows the lowered balance
    assert _shown(web.get("/portal/rewards").text, "balance") == 300
    # and the coupon list has it among the active ones
    listed = web.get("/portal/coupons").text
    assert listed.count('data-status="active"') == 1
    assert format_code(coupon.code) in listed


def test_a_new_form_after_spending_the_points_is_refused_in_place(db: Database) -> None:
    prog = f.programme(db)
    web, who = _member(db, prog, 600)
    voucher = f.reward(db, prog, points_cost=500)
    confirm = web.get(f"/portal/rewards/{voucher.id}/redeem")
    other_tab = web.get(f"/portal/rewards/{voucher.id}/redeem")
    done = web.post(f"/portal/rewards/{voucher.id}/redeem", data=_form(confirm.text))
    assert done.status_code == 200
    # the second tab's form has its own key: the balance was spent meanwhile
    refused = web.post(f"/portal/rewards/{voucher.id}/redeem", data=_form(other_tab.text))
    assert refused.status_code == 422
    assert 'data-testid="error"' in refused.text
    assert "Noch 400 Punkte nötig" in refused.text
    assert f.balance(db, who).available == 100


def test_without_the_csrf_token_nothing_is_redeemed(db: Database) -> None:
    prog = f.programme(db)
    web, who = _member(db, prog, 600)
    voucher = f.reward(db, prog, points_cost=500)
    form = _form(web.get(f"/portal/rewards/{voucher.id}/redeem").text)
    for bad in ({**form, "csrf": "forged"}, {"key": form["key"]}):
        refused = web.post(f"/portal/rewards/{voucher.id}/redeem", data=bad)
        assert refused.status_code in (403, 422)
    forged = web.post(f"/portal/rewards/{voucher.id}/redeem", data={**form, "csrf": "forged"})
    assert forged.status_code == 403
    assert f.balance(db, who).available == 600


def test_another_members_coupon_is_not_found(db: Database) -> None:
    prog = f.programme(db)
    other, coupon = f.coupon(db, prog)
    web, _ = _member(db, prog, 0)
    assert web.get(f"/portal/coupons/{coupon.id}").status_code == 404
    assert web.get(f"/portal/coupons/{coupon.id}/qr.svg").status_code == 404
    assert web.get(f"/portal/coupons/{uuid.uuid4()}").status_code == 404
    assert web.get(f"/portal/rewards/{uuid.uuid4()}/redeem").status_code == 404
    page = web.get(f"/portal/coupons/{coupon.id}")  # in the member's language, back home
    assert "Diese Seite oder diesen Eintrag gibt es nicht." in page.text
    assert "of this member" not in page.text
    assert 'href="/portal"' in page.text
    assert 'href="/admin"' not in page.text
    # its owner sees it
    owner = signed_in(client(db), db, other)
    assert owner.get(f"/portal/coupons/{coupon.id}").status_code == 200


def test_coupons_active_first_then_used_and_expired(db: Database) -> None:
    prog = f.programme(db)
    web, who = _member(db, prog, 0)

    def coupon_now(name: str, *, at: datetime) -> Coupon:
        offer = f.reward(db, prog, name={"en": name, "de": name})
        f.earn(db, prog, who, offer.points_cost, at=at)
        return f.coupon_of(db, f.redeem(db, who, offer, now=at))

    now = utc_now()
    used = coupon_now("Used one", at=now - timedelta(hours=1))
    f.use_coupon(db, prog, used.code, "order-1", now=now)
    coupon_now("Old one", at=now - timedelta(days=400))  # its validity ran out
    coupon_now("Fresh one", at=now - timedelta(minutes=5))
    page = web.get("/portal/coupons")
    assert page.status_code == 200
    assert page.text.index("Fresh one") < page.text.index("Used one")
    assert re.findall(r'data-status="([a-z]+)"', page.text) == ["active", "used", "expired"]
    assert "Old one" in page.text.split('id="past-h"')[1]


def test_signed_out_members_are_sent_to_sign_in(db: Database) -> None:
    web = client(db)
    for path in ("/portal/rewards", "/portal/coupons", f"/portal/coupons/{uuid.uuid4()}"):
        answer = web.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/portal/sign-in")
