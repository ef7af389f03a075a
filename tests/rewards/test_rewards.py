"""The rewards catalogue and redemptions, through the services, on SQLite and PostgreSQL:
what each reward type needs, what a member may redeem and why not, redeeming (points
FIFO by expiry, stock, limits, idempotency), cancelling, coupon expiry and the policies.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from tests import factories as f
from treu.db.session import Database
from treu.errors import Invalid
from treu.kit import codes
from treu.ledger.errors import InsufficientPoints
from treu.ledger.explain import render
from treu.ledger.models import Lot, Posting, PostingKind
from treu.ledger.service import ledger
from treu.members.errors import MemberClosed
from treu.members.models import Member
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.programmes.models import Programme
from treu.rewards.errors import (
    IdempotencyKeyConflict,
    MemberLimitReached,
    OutOfStock,
    RedemptionNotCancellable,
    RewardExists,
    RewardLocked,
    RewardNotFound,
    StockBelowRedeemed,
    StockModeChange,
    UnknownTier,
)
from treu.rewards.models import Coupon, Redemption, Reward
from treu.rewards.schemas import MemberRewardsOut, ReasonOut, RewardIn, RewardPatch
from treu.rewards.service import catalogue, redemptions
from treu.worker.jobs import expire_coupons

T0 = f.REWARDS_T0

# --- helpers ---------------------------------------------------------------------------------


def available(db: Database, who: Member) -> int:
    return f.balance(db, who).available


def listing(db: Database, who: Member, *, now: datetime = T0, lang: str = "en") -> MemberRewardsOut:
    with db.unit_of_work(write=False) as session:
        return redemptions.member_rewards(session, member_id=who.id, lang=lang, now=now)


def locked_codes(found: MemberRewardsOut, reward: Reward) -> list[str]:
    for item in found.locked:
        if item.id == reward.id:
            return [r.code for r in item.reasons]
    assert any(item.id == reward.id for item in found.redeemable)
    return []


# --- the catalogue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "percent_discount"}, "needs percent_bp"),
        ({"type": "free_product", "value_minor": None}, "needs sku"),
        ({"type": "experience", "value_minor": None}, "needs event"),
        ({"type": "donation", "value_minor": None}, "needs charity"),
        ({"type": "amount_discount", "value_minor": 500, "sku": "x"}, "takes no sku"),
        ({"type": "wallet_credit", "min_order_minor": 100}, "discounts and free products"),
        ({"type": "wallet_credit", "coupon_valid_days": 10}, "issues no coupon"),
        ({"valid_from": "2026-02-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}, "after"),
        ({"eligibility": {"segments": ["Not a slug"]}}, "should match pattern"),
        ({"points_cost": 0}, "greater than or equal to 1"),
        ({"code": "Has Spaces"}, "pattern"),
    ],
)
def test_a_reward_that_could_never_work_is_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RewardIn.model_validate({**f.VOUCHER, **spec})


def test_each_type_is_created_with_what_it_needs(db: Database) -> None:
    prog = f.programme(db)
    percent = f.reward(db, prog, type="percent_discount", value_minor=None, percent_bp=1000)
    assert (percent.percent_bp, percent.coupon_valid_days, percent.currency) == (1000, 30, None)
    voucher = f.reward(db, prog, min_order_minor=2000, coupon_valid_days=14)
    assert (voucher.value_minor, voucher.currency, voucher.coupon_valid_days) == (500, "EUR", 14)
    coffee = f.reward(db, prog, type="free_product", value_minor=None, sku="7002")
    assert coffee.sku == "7002"
    styling = f.reward(
        db,
        prog,
        type="experience",
        value_minor=None,
        event={"starts_at": "2026-07-01T16:00:00Z", "location": "Berlin"},
        stock=8,
    )
    assert (styling.event_location, styling.stock_total, styling.stock_left) == ("Berlin", 8, 8)
    assert styling.coupon_valid_days is None
    with db.unit_of_work(write=False) as session:
        out = catalogue.out(session.get_one(Reward, styling.id), prog.slug)
    assert out.stock is not None
    assert (out.stock.total, out.stock.left) == (8, 8)
    assert out.event is not None
    assert out.event.starts_at == datetime(2026, 7, 1, 16, tzinfo=UTC)


def test_codes_are_unique_per_programme(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    f.reward(db, prog, code="coffee")
    f.reward(db, other, code="coffee")
    with pytest.raises(RewardExists):
        f.reward(db, prog, code="coffee")


def test_references_are_checked_against_the_programme(db: Database) -> None:
    prog = f.programme(db)
    with pytest.raises(UnknownTier):
        f.reward(db, prog, eligibility={"min_tier": "gold"})
    with pytest.raises(Invalid, match="no charity"):
        f.reward(db, prog, type="donation", value_minor=None, charity="nobody")
    with pytest.raises(Invalid, match="runs in EUR"):
        f.reward(db, prog, currency="USD")


def test_restocking_moves_what_is_left_and_never_below_what_is_redeemed(db: Database) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog, stock=3)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 2000)
    f.redeem(db, anna, reward)
    f.redeem(db, anna, reward)

    def patch(**changes: Any) -> Reward:
        with db.unit_of_work() as session:
            done = catalogue.update(
                session,
                programme=prog,
                reward_id=reward.id,
                patch=RewardPatch.model_validate(changes),
                actor="test",
            )
            return done

    patch(stock=10)
    row = f.reward_row(db, reward)
    assert (row.stock_total, row.stock_left) == (10, 8)
    patch(stock=2)
    row = f.reward_row(db, reward)
    assert (row.stock_total, row.stock_left) == (2, 0)
    with pytest.raises(StockBelowRedeemed):
        patch(stock=1)
    patch(points_cost=450, name={"de": "Gutschein", "en": "Voucher"})
    row = f.reward_row(db, reward)
    assert (row.points_cost, row.name["de"], row.stock_left) == (450, "Gutschein", 0)
    patch(stock=None)
    row = f.reward_row(db, reward)
    assert (row.stock_total, row.stock_left) == (None, None)
    with pytest.raises(StockModeChange):
        patch(stock=5)
    with pytest.raises(ValidationError, match="takes no sku"):
        patch(sku="4001")


def test_an_archived_reward_leaves_the_catalogue_but_its_coupons_stay_valid(
    db: Database,
) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    redeemed = f.redeem(db, anna, reward)
    with db.unit_of_work() as session:
        catalogue.archive(session, programme=prog, reward_id=reward.id, actor="test")
    assert f.reward_row(db, reward).status == "archived"
    with db.unit_of_work(write=False) as session:
        assert catalogue.all(session, programme=prog) == []
    assert listing(db, anna).redeemable == []
    with pytest.raises(RewardNotFound):
        f.redeem(db, anna, reward)
    assert f.coupon_of(db, redeemed).status == "active"


# --- what a member may redeem ----------------------------------------------------------------


def test_the_listing_says_what_is_redeemable_and_why_the_rest_is_locked(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog, enrolled_at=(T0 - timedelta(days=10)).isoformat())
    f.earn(db, prog, anna, 740)
    cheap = f.reward(db, prog, points_cost=500)
    dear = f.reward(db, prog, points_cost=1000)
    loyal = f.reward(db, prog, points_cost=100, eligibility={"min_membership_days": 30})
    gone = f.reward(db, prog, points_cost=100, stock=0)
    later = f.reward(db, prog, points_cost=100, valid_from=(T0 + timedelta(days=3)).isoformat())
    over = f.reward(db, prog, points_cost=100, valid_until=(T0 - timedelta(days=1)).isoformat())
    once = f.reward(db, prog, points_cost=100, per_member_limit=1)
    f.redeem(db, anna, once)  # 640 left
    f.reward(db, prog, points_cost=100, status="paused")  # listed to nobody

    found = listing(db, anna)
    assert found.available_points == 640
    assert [r.id for r in found.redeemable] == [cheap.id]
    assert found.redeemable[0].reasons == []
    assert locked_codes(found, dear) == ["insufficient_points"]
    item = next(i for i in found.locked if i.id == dear.id)
    assert item.reasons[0].params["missing_points"] == 360
    assert item.reasons[0].text == "360 more points needed"
    assert locked_codes(found, loyal) == ["membership_too_new"]
    assert locked_codes(found, gone) == ["out_of_stock"]
    assert locked_codes(found, later) == ["not_yet_available"]
    assert locked_codes(found, over) == ["no_longer_available"]
    assert locked_codes(found, once) == ["member_limit_reached"]
    assert len(found.locked) == 6

    german = listing(db, anna, lang="de")
    texts = {i.id: [r.text for r in i.reasons] for i in german.locked}
    assert texts[dear.id] == ["Noch 360 Punkte nötig"]
    assert texts[loyal.id] == ["Ab 30 Tagen Mitgliedschaft, in 20 Tagen"]
    assert texts[gone.id] == ["Vergriffen"]
    assert texts[later.id] == ["Erhältlich ab 04.06.2026"]
    assert texts[once.id] == ["Limit erreicht: 1 pro Mitglied"]
    assert german.redeemable[0].name == "5-€-Gutschein"
    assert german.redeemable[0].summary == "5,00\xa0€ Rabatt"


def test_a_blocked_member_sees_every_reward_locked(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(db, prog)
    with db.unit_of_work() as session:
        members.update(
            session, member=members.get(session, anna.id), data=MemberUpdate(status="blocked")
        )
    assert locked_codes(listing(db, anna), reward) == ["member_blocked"]
    with pytest.raises(RewardLocked) as refused:
        f.redeem(db, anna, reward)
    assert refused.value.extra["reasons"][0]["code"] == "member_blocked"
    assert available(db, anna) == 1000


def test_a_closed_member_cannot_redeem(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(db, prog)
    with db.unit_of_work() as session:
        members.update(
            session, member=members.get(session, anna.id), data=MemberUpdate(status="closed")
        )
    with pytest.raises(MemberClosed):
        f.redeem(db, anna, reward)


# --- redeeming ---------------------------------------------------------------------------------


def test_redeeming_burns_points_earliest_expiry_first_and_issues_a_coupon(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 12})
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 300, at=T0 - timedelta(days=100))  # expires first
    f.earn(db, prog, anna, 400, at=T0 - timedelta(days=200))  # expires even earlier
    f.earn(db, prog, anna, 300, at=T0 - timedelta(days=10))
    reward = f.reward(db, prog, coupon_valid_days=14, stock=5)

    redeemed = f.redeem(db, anna, reward)
    assert (redeemed.replayed, redeemed.http_status) == (False, 201)
    body = redeemed.result
    assert body.points == 500
    assert body.status == "redeemed"
    assert body.balance == {"available": 500, "pending": 0}
    assert body.posting["kind"] == "redeem"
    assert body.posting["points"] == -500
    assert body.posting["explanation"] == "Redeemed: €5 voucher: -500"
    assert body.fulfilment is None
    coupon = body.coupon
    assert coupon is not None
    assert codes.is_valid(coupon.code)
    assert coupon.code == codes.format_code(coupon.code)
    assert coupon.expires_at == datetime(2026, 6, 15, 10, tzinfo=UTC)
    assert coupon.qr_url == f"/v1/coupons/{coupon.code}/qr.svg"

    with db.unit_of_work(write=False) as session:
        lots = {
            (T0 - lot.earned_at).days: lot.remaining
            for lot in session.scalars(select(Lot).where(Lot.member_id == anna.id))
        }
        posting = session.get_one(Posting, uuid.UUID(body.posting["id"]))
        assert posting.correlation_id == body.id
        assert render(posting.details, "de") == "Eingelöst: 5-€-Gutschein: -500"
    assert lots == {200: 0, 100: 200, 10: 300}
    assert f.reward_row(db, reward).stock_left == 4
    stored = f.coupon_of(db, redeemed)
    assert (stored.status, stored.kind, stored.terms["value_minor"]) == (
        "active",
        "amount_discount",
        500,
    )
    assert f.verify(db, prog) == []


def test_a_repeated_key_answers_the_same_and_another_reward_under_it_conflicts(
    db: Database,
) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 2000)
    reward, other = f.reward(db, prog, stock=10), f.reward(db, prog)
    first = f.redeem(db, anna, reward, key="app-1")
    again = f.redeem(db, anna, reward, key="app-1")
    assert (first.replayed, again.replayed, again.http_status) == (False, True, 200)
    assert again.result == first.result
    assert available(db, anna) == 1500
    assert f.reward_row(db, reward).stock_left == 9
    with pytest.raises(IdempotencyKeyConflict):
        f.redeem(db, anna, other, key="app-1")
    # The key is the member's own: another member may use the same string.
    bert = f.member(db, prog)
    f.earn(db, prog, bert, 600)
    assert not f.redeem(db, bert, reward, key="app-1").replayed


def test_not_enough_points_changes_nothing(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 499)
    reward = f.reward(db, prog, stock=1)
    with pytest.raises(InsufficientPoints) as refused:
        f.redeem(db, anna, reward)
    assert refused.value.extra["needed"] == 500
    assert refused.value.extra["available"] == 499
    assert refused.value.extra["reasons"][0]["params"]["missing_points"] == 1
    assert available(db, anna) == 499
    assert f.reward_row(db, reward).stock_left == 1
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Redemption.member_id == anna.id)) == 0


def test_stock_and_the_per_member_limit_hold(db: Database) -> None:
    prog = f.programme(db)
    anna, bert = f.member(db, prog), f.member(db, prog)
    f.earn(db, prog, anna, 5000)
    f.earn(db, prog, bert, 5000)
    reward = f.reward(db, prog, stock=3, per_member_limit=2)
    f.redeem(db, anna, reward)
    f.redeem(db, anna, reward)
    with pytest.raises(MemberLimitReached):
        f.redeem(db, anna, reward)
    f.redeem(db, bert, reward)
    with pytest.raises(OutOfStock):
        f.redeem(db, bert, reward)
    assert f.reward_row(db, reward).stock_left == 0
    assert (available(db, anna), available(db, bert)) == (4000, 4500)


def test_a_reward_is_redeemed_by_its_code_too(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(
        db, prog, code="coffee-free", type="free_product", value_minor=None, sku="7002"
    )
    with db.unit_of_work() as session:
        redeemed = redemptions.redeem(
            session, member_id=anna.id, key="k", reward_code="coffee-free", now=T0
        )
    assert (redeemed.replayed, redeemed.result.reward.id) == (False, reward.id)
    with db.unit_of_work() as session, pytest.raises(RewardNotFound):
        redemptions.redeem(session, member_id=anna.id, key="k2", reward_code="nope", now=T0)


def test_a_reward_of_another_programme_is_not_found(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    with pytest.raises(RewardNotFound):
        f.redeem(db, anna, f.reward(db, other))


def test_an_experience_ticket_lasts_until_the_event_and_cannot_be_booked_after_it_began(
    db: Database,
) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 3000)
    starts = T0 + timedelta(days=5)
    evening = f.reward(
        db,
        prog,
        type="experience",
        value_minor=None,
        points_cost=1000,
        event={
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
        },
        stock=20,
    )
    styling = f.reward(
        db,
        prog,
        type="experience",
        value_minor=None,
        points_cost=1000,
        event={"starts_at": starts.isoformat()},  # no end: the end of that day in Berlin
    )
    ticket = f.redeem(db, anna, evening).result.coupon
    assert ticket is not None
    assert ticket.expires_at == datetime(2026, 6, 6, 13, tzinfo=UTC)
    ticket = f.redeem(db, anna, styling).result.coupon
    assert ticket is not None
    assert ticket.expires_at == datetime(2026, 6, 6, 22, tzinfo=UTC)
    found = listing(db, anna, now=starts + timedelta(minutes=1))
    assert locked_codes(found, evening) == ["no_longer_available"]
    with pytest.raises(RewardLocked):
        f.redeem(db, anna, evening, now=starts + timedelta(minutes=1))


def test_a_donation_is_recorded_for_the_charity(db: Database) -> None:
    from treu.rewards.donations import Donation

    prog = f.programme(db)
    charity = add_charity(db, prog)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    fixed = f.reward(db, prog, type="donation", value_minor=500, charity=charity)
    at_value = f.reward(
        db, prog, type="donation", value_minor=None, points_cost=250, charity=charity
    )
    body = f.redeem(db, anna, fixed).result
    assert body.coupon is None
    assert body.fulfilment == {
        "type": "donation",
        "charity": charity,
        "value_minor": 500,
        "currency": "EUR",
    }
    second = f.redeem(db, anna, at_value).result
    assert second.fulfilment is not None
    assert second.fulfilment["value_minor"] == 250  # 250 points at 1 cent each
    with db.unit_of_work(write=False) as session:
        donations = {
            d.redemption_id: (d.points, d.value_minor)
            for d in session.scalars(select(Donation).where(Donation.member_id == anna.id))
        }
    assert donations == {body.id: (500, 500), second.id: (250, 250)}
    with pytest.raises(RedemptionNotCancellable, match="fulfilled at once"):
        f.cancel(db, body.id)
    assert available(db, anna) == 250


def test_a_wallet_credit_is_booked(db: Database) -> None:
    from treu.rewards.wallet import wallet

    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(db, prog, type="wallet_credit", value_minor=1000, points_cost=1000)
    body = f.redeem(db, anna, reward).result
    assert body.fulfilment == {"type": "wallet_credit", "amount_minor": 1000, "currency": "EUR"}
    with db.unit_of_work(write=False) as session:
        assert wallet.balance(session, member_id=anna.id).balance_minor == 1000
    with pytest.raises(RedemptionNotCancellable):
        f.cancel(db, body.id)


def add_charity(db: Database, prog: Programme, code: str = "tafel") -> str:
    from treu.rewards.donations import donations

    with db.unit_of_work() as session:
        donations.add_charity(
            session,
            programme_id=prog.id,
            code=code,
            name={"de": "Tafel Deutschland e.V.", "en": "German Food Banks"},
        )
    return code


# --- cancelling and expiry ---------------------------------------------------------------------


def test_cancelling_gives_back_the_points_to_their_lots_and_the_stock(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 12})
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 300, at=T0 - timedelta(days=100))
    f.earn(db, prog, anna, 300, at=T0 - timedelta(days=10))
    reward = f.reward(db, prog, stock=2)
    redeemed = f.redeem(db, anna, reward)
    assert available(db, anna) == 100
    done = f.cancel(db, redeemed.result.id, now=T0 + timedelta(days=1))
    assert done.status == "cancelled"
    assert done.refund_posting_id is not None
    assert available(db, anna) == 600
    assert f.reward_row(db, reward).stock_left == 2
    assert f.coupon_of(db, redeemed).status == "cancelled"
    with db.unit_of_work(write=False) as session:
        lots = sorted(
            lot.remaining for lot in session.scalars(select(Lot).where(Lot.member_id == anna.id))
        )
        refund = session.get_one(Posting, done.refund_posting_id)
    assert lots == [300, 300]
    assert (refund.kind, refund.points) == (PostingKind.refund, 500)
    assert refund.explanation == "Refund: €5 voucher (cancelled): +500"
    assert render(refund.details, "de") == "Erstattung: 5-€-Gutschein (storniert): +500"
    # Cancelling again answers the same and changes nothing.
    assert f.cancel(db, redeemed.result.id).status == "cancelled"
    assert available(db, anna) == 600
    assert f.reward_row(db, reward).stock_left == 2
    assert f.verify(db, prog) == []


def test_cancelling_without_a_refund_policy_keeps_the_points(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 500)
    reward = f.reward(db, prog, stock=1, policies={"refund_on_cancel": False})
    done = f.cancel(db, f.redeem(db, anna, reward).result.id)
    assert (done.status, done.refund_posting_id) == ("cancelled", None)
    assert available(db, anna) == 0
    assert f.reward_row(db, reward).stock_left == 1


def test_a_used_coupon_cannot_be_cancelled(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 500)
    reward = f.reward(db, prog)
    redeemed = f.redeem(db, anna, reward)
    f.use_coupon(db, prog, f.coupon_of(db, redeemed).code, "order-1", amount_minor=2000)
    with pytest.raises(RedemptionNotCancellable, match="used"):
        f.cancel(db, redeemed.result.id)
    assert available(db, anna) == 0


def test_unused_coupons_expire_with_stock_back_and_a_refund_where_the_reward_says_so(
    fresh_db: Database,
) -> None:
    db = fresh_db  # the job looks at every coupon: an empty database of its own
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    refunding = f.reward(
        db, prog, stock=5, coupon_valid_days=7, policies={"refund_on_expiry": True}
    )
    keeping = f.reward(db, prog, stock=5, coupon_valid_days=7)
    first = f.redeem(db, anna, refunding)
    second = f.redeem(db, anna, keeping)
    assert available(db, anna) == 0
    assert expire_coupons(db, now=T0 + timedelta(days=6)) == 0
    assert expire_coupons(db, now=T0 + timedelta(days=7, seconds=1)) == 2
    assert expire_coupons(db, now=T0 + timedelta(days=7, seconds=1)) == 0  # safe twice
    assert (f.coupon_of(db, first).status, f.coupon_of(db, second).status) == ("expired", "expired")
    assert available(db, anna) == 500
    assert f.reward_row(db, refunding).stock_left == 5
    assert f.reward_row(db, keeping).stock_left == 5
    with db.unit_of_work(write=False) as session:
        states = {
            r.id: (r.status, r.refund_posting_id is not None)
            for r in session.scalars(select(Redemption).where(Redemption.member_id == anna.id))
        }
    assert states == {first.result.id: ("expired", True), second.result.id: ("expired", False)}
    with pytest.raises(RedemptionNotCancellable):
        f.cancel(db, first.result.id, now=T0 + timedelta(days=8))
    # An expired redemption no longer counts against a per-member limit.
    assert f.verify(db, prog) == []


def test_a_coupon_past_its_expiry_cannot_be_cancelled_before_the_job_ran(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 500)
    redeemed = f.redeem(db, anna, f.reward(db, prog, coupon_valid_days=1))
    with pytest.raises(RedemptionNotCancellable, match="no longer active"):
        f.cancel(db, redeemed.result.id, now=T0 + timedelta(days=2))


def test_redemption_listings(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 5000)
    reward = f.reward(db, prog)
    made = [f.redeem(db, anna, reward).result.id for _ in range(5)]
    f.cancel(db, made[0])
    with db.unit_of_work(write=False) as session:
        page, cursor = redemptions.for_member(session, member_id=anna.id, limit=3)
        assert [r.id for r, _ in page] == made[::-1][:3]
        assert cursor is not None
        rest, end = redemptions.for_member(session, member_id=anna.id, limit=3, cursor=cursor)
        assert [r.id for r, _ in rest] == made[::-1][3:]
        assert end is None
        out = redemptions.public(rest[-1][0], rest[-1][1], lang="de", timezone=prog.timezone)
    assert out.status == "cancelled"
    assert out.coupon is not None
    assert out.coupon.status == "cancelled"
    assert out.reward["summary"] == "5,00\xa0€ Rabatt"


def test_a_reward_for_a_tier_and_above(db: Database) -> None:
    from treu.tiers.schemas import TierCreate
    from treu.tiers.service import tiers

    prog = f.programme(db)
    with db.unit_of_work() as session:
        programme = session.get_one(Programme, prog.id)
        for code, rank, threshold, name in (
            ("bronze", 0, 0, "Bronze"),
            ("silber", 1, 500, "Silber"),
            ("gold", 2, 1000, "Gold"),
        ):
            tiers.create(
                session,
                programme=programme,
                data=TierCreate.model_validate(
                    {
                        "code": code,
                        "rank": rank,
                        "threshold": threshold,
                        "name": {"de": name, "en": name},
                    }
                ),
                actor="test",
            )
    anna, bert, cleo = f.member(db, prog), f.member(db, prog), f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=150_000, occurred_at=T0), now=T0)
    f.ingest_one(db, f.purchase_payload(prog, cleo, amount_minor=60_000, occurred_at=T0), now=T0)
    f.earn(db, prog, bert, 5000)
    evening = f.reward(db, prog, points_cost=100, eligibility={"min_tier": "silber"})

    assert listing(db, anna).tier == "gold"
    assert locked_codes(listing(db, anna), evening) == []
    assert locked_codes(listing(db, cleo), evening) == []
    found = listing(db, bert, lang="de")
    assert found.tier == "bronze"
    item = next(i for i in found.locked if i.id == evening.id)
    assert item.reasons == [
        ReasonOut(
            code="tier_required",
            text="Für Mitglieder ab Silber",
            params={"tier": "silber", "current_tier": "bronze"},
        )
    ]
    with pytest.raises(RewardLocked):
        f.redeem(db, bert, evening)
    assert not f.redeem(db, anna, evening).replayed
    assert available(db, bert) == 5000


def test_a_cancelled_redemption_no_longer_counts_against_the_limit(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 2000)
    reward = f.reward(db, prog, per_member_limit=1)
    first = f.redeem(db, anna, reward)
    with pytest.raises(MemberLimitReached):
        f.redeem(db, anna, reward)
    f.cancel(db, first.result.id)
    assert not f.redeem(db, anna, reward).replayed


def test_the_expiry_job_is_registered_for_the_worker(fresh_db: Database) -> None:
    from treu.worker.jobs import JOBS, run_job

    job = JOBS["rewards.expire_coupons"]
    assert (job.unit, job.interval_setting) == ("coupons expired", "worker_coupons_every_seconds")
    prog = f.programme(fresh_db)
    anna = f.member(fresh_db, prog)
    f.earn(fresh_db, prog, anna, 500)
    f.redeem(fresh_db, anna, f.reward(fresh_db, prog, coupon_valid_days=1))
    assert run_job(fresh_db, "rewards.expire_coupons", now=T0) == 0  # not due yet
    assert run_job(fresh_db, "rewards.expire_coupons", now=T0 + timedelta(days=2)) == 1


def test_the_demo_has_rewards_redemptions_and_used_coupons(fresh_db: Database) -> None:
    from treu.demo import load_demo

    load_demo(fresh_db, members=120, purchases=2500, seed=5, now=T0)
    with fresh_db.unit_of_work(write=False) as session:
        rewards = {r.code: r for r in session.scalars(select(Reward))}
        assert len(rewards) == 9
        assert {r.type for r in rewards.values()} == {
            "percent_discount",
            "amount_discount",
            "free_product",
            "experience",
            "donation",
            "wallet_credit",
        }
        assert rewards["early-access-abend"].min_tier == "gold"
        assert rewards["styling-termin"].name["de"] == "Persönlicher Styling-Termin"
        states: dict[str, int] = {
            status: int(n)
            for status, n in session.execute(
                select(Redemption.status, func.count()).group_by(Redemption.status)
            )
        }
        assert states["redeemed"] >= 10
        assert states["cancelled"] == 1
        used = session.scalar(select(func.count()).where(Coupon.status == "used"))
        assert used is not None
        assert used >= 5
        for reward in rewards.values():
            held = session.scalar(
                select(func.count()).where(
                    Redemption.reward_id == reward.id, Redemption.status == "redeemed"
                )
            )
            if reward.stock_total is not None:
                assert reward.stock_left == reward.stock_total - int(held or 0)
        assert ledger.verify(session) == []


# --- the console's needs: topping up stock, counts per reward ------------------------------


def test_add_stock_moves_total_and_left_and_never_below_redeemed(db: Database) -> None:
    from treu.rewards.errors import StockBelowRedeemed, StockModeChange

    prog = f.programme(db)
    limited = f.reward(db, prog, stock=4)
    who = f.member(db, prog)
    f.earn(db, prog, who, 5000)
    f.redeem(db, who, limited)
    with db.unit_of_work() as session:
        topped = catalogue.add_stock(
            session, programme=prog, reward_id=limited.id, units=6, actor="test"
        )
        assert (topped.stock_total, topped.stock_left) == (10, 9)
    with db.unit_of_work() as session, pytest.raises(StockBelowRedeemed):
        catalogue.add_stock(session, programme=prog, reward_id=limited.id, units=-10, actor="t")
    with db.unit_of_work() as session:
        taken = catalogue.add_stock(
            session, programme=prog, reward_id=limited.id, units=-9, actor="test"
        )
        assert (taken.stock_total, taken.stock_left) == (1, 0)
    unlimited = f.reward(db, prog)
    with db.unit_of_work() as session, pytest.raises(StockModeChange):
        catalogue.add_stock(session, programme=prog, reward_id=unlimited.id, units=5, actor="t")


def test_redemption_counts_per_reward(db: Database) -> None:
    prog = f.programme(db)
    one, two, none = f.reward(db, prog), f.reward(db, prog), f.reward(db, prog)
    who = f.member(db, prog)
    f.earn(db, prog, who, 5000)
    first = f.redeem(db, who, one)
    f.redeem(db, who, one)
    f.redeem(db, who, two)
    f.cancel(db, first.result.id)
    with db.unit_of_work(write=False) as session:
        counts = catalogue.redemption_counts(session, [one.id, two.id, none.id])
        assert catalogue.redemption_counts(session, []) == {}
    assert counts == {one.id: (2, 1), two.id: (1, 1)}
