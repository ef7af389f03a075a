"""Typed factories for tests: real rows through the real services, never mocks.

One per aggregate — ``programme``, ``member``, ``rule`` (published), ``tiered`` (a
programme with a tier ladder), ``reward``, ``coupon`` (issued by redeeming a coupon
reward), ``challenge`` (active), ``campaign`` (active), ``api_key`` — and the few
actions and reads the tests of several features share (ingesting, earning, redeeming,
using a coupon, balances).
Test modules import these, never one another (``tests/test_layout.py``)."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from treu.auth.models import ApiKey
from treu.auth.service import api_keys
from treu.campaigns.models import Arm, Campaign
from treu.campaigns.schemas import CampaignSpec
from treu.campaigns.service import arm_of, campaigns
from treu.challenges.models import Challenge
from treu.challenges.service import challenges
from treu.challenges.spec import ChallengeSpec
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.events.integrity import check_references
from treu.events.schemas import event_adapter
from treu.events.service import Outcome, ingest_with_retry
from treu.kit.time import utc_now
from treu.ledger.adjustments import Adjustment, AdjustmentResult, adjustments
from treu.ledger.service import Balance, ledger
from treu.members.models import Member
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.rewards.coupons import Cart, CartLine, coupons
from treu.rewards.models import Coupon, Redemption, Reward
from treu.rewards.schemas import CouponUseOut, Keyed, RedemptionResult, RewardIn
from treu.rewards.service import catalogue, redemptions
from treu.rules.models import Rule
from treu.rules.service import rules
from treu.rules.spec import RuleSpec
from treu.tiers.schemas import TierCreate
from treu.tiers.service import tiers

_seq = itertools.count(1)

MILK: dict[str, Any] = {
    "sku": "4001",
    "name": "Bio Vollmilch",
    "category": "dairy",
    "quantity": 2,
    "unit_price_minor": 129,
    "tags": ["organic"],
}
COFFEE: dict[str, Any] = {
    "sku": "7002",
    "name": "Kaffee",
    "category": "coffee",
    "quantity": 1,
    "unit_price_minor": 899,
    "tags": [],
}


ORGANIC_X2: dict[str, Any] = {
    "name": "Organic x2",
    "trigger": "purchase",
    "line_condition": "'organic' in line.tags",
    "effect": {"type": "multiplier", "factor": "2", "scope": "lines"},
}
"""An earning rule that doubles the points of organic lines (``rule(db, prog,
**ORGANIC_X2)``): on the contract lines it adds 2 to the base rate's 11."""


def contract_lines() -> list[dict[str, Any]]:
    """Fresh copies of the issue's contract example lines: 2 x 1.29 + 8.99 = 11.57 EUR,
    which earn 11 points at 1 point per EUR 1 (floor per order)."""
    return copy.deepcopy([MILK, COFFEE])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def programme(db: Database, **overrides: Any) -> Programme:
    data: dict[str, Any] = {
        "slug": unique("p"),
        "name": "Test programme",
        "currency": "EUR",
        "points_per_currency_unit": 1,
        "pending_days": 0,
        "expiry": {"policy": "never"},
    }
    data.update(overrides)
    with db.unit_of_work() as session:
        return programmes.create(session, data=ProgrammeCreate.model_validate(data))


def member(db: Database, prog: Programme, **overrides: Any) -> Member:
    data: dict[str, Any] = {"programme": prog.slug, "email": f"{unique('m')}@example.com"}
    data.update(overrides)
    with db.unit_of_work() as session:
        return members.enrol(
            session,
            programme=prog,
            data=MemberCreate.model_validate(data),
            writer=ledger.writer(session),
        )


def purchase_payload(
    prog: Programme,
    who: Member | None,
    *,
    lines: list[dict[str, Any]] | None = None,
    amount_minor: int | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    channel: str = "pos",
) -> dict[str, Any]:
    if lines is None:
        lines = [
            {
                "sku": "sku-1",
                "category": "misc",
                "quantity": 1,
                "unit_price_minor": amount_minor if amount_minor is not None else 1000,
            }
        ]
    payload: dict[str, Any] = {
        "id": event_id or unique("ev"),
        "type": "purchase",
        "programme": prog.slug,
        "occurred_at": (occurred_at or utc_now()).isoformat(),
        "channel": channel,
        "currency": prog.currency,
        "lines": lines,
    }
    if who is not None:
        payload["member"] = {"member_id": str(who.id)}
    return payload


def membership_payload(
    prog: Programme, who: Member, at: datetime, tier: str, months: int
) -> dict[str, Any]:
    """A bought tier (``membership_purchased``) for ``months`` from ``at``."""
    return {
        "id": unique("membership"),
        "type": "membership_purchased",
        "programme": prog.slug,
        "member": member_ref(who),
        "occurred_at": at.isoformat(),
        "attributes": {"tier": tier, "months": months, "amount_minor": 4900, "currency": "EUR"},
    }


def install_payload(prog: Programme, who: Member, at: datetime) -> dict[str, Any]:
    """An app installation (``app_installed``) of ``who`` at ``at``."""
    return {
        "id": unique("install"),
        "type": "app_installed",
        "programme": prog.slug,
        "member": member_ref(who),
        "occurred_at": at.isoformat(),
        "attributes": {"platform": "ios"},
    }


def member_ref(who: Member) -> dict[str, str]:
    return {"member_id": str(who.id)}


def return_payload(
    prog: Programme,
    original_event_id: str,
    lines: list[dict[str, Any]],
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or unique("ret"),
        "type": "return",
        "programme": prog.slug,
        "occurred_at": (occurred_at or utc_now()).isoformat(),
        "original_event_id": original_event_id,
        "lines": lines,
    }


def ingest(db: Database, *payloads: dict[str, Any], now: datetime | None = None) -> list[Outcome]:
    return ingest_with_retry(db, [event_adapter.validate_python(p) for p in payloads], now=now)


def ingest_one(db: Database, payload: dict[str, Any], now: datetime | None = None) -> Outcome:
    outcome = ingest(db, payload, now=now)[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome


def balance(db: Database, who: Member) -> Balance:
    with db.unit_of_work(write=False) as session:
        return ledger.balance(session, member_id=who.id)


def verify(db: Database, prog: Programme) -> list[Any]:
    """What ``treu ledger verify`` reports for ``prog``: balances and copied ids."""
    with db.unit_of_work(write=False) as session:
        return ledger.verify(session, programme_id=prog.id) + check_references(
            session, programme_id=prog.id
        )


# --- rules ------------------------------------------------------------------------------------


def rule(db: Database, prog: Programme, **spec: Any) -> Rule:
    """A rule created and published (version 1) from ``spec`` (a ``RuleSpec``)."""
    with db.unit_of_work() as session:
        created = rules.create(
            session, programme=prog, spec=RuleSpec.model_validate(spec), actor="test"
        )
        return rules.publish(session, created, actor="test")


# --- tiers ------------------------------------------------------------------------------------

LADDER: list[dict[str, Any]] = [
    {"code": "bronze", "rank": 0, "name": {"en": "Bronze", "de": "Bronze"}, "threshold": 0},
    {
        "code": "silber",
        "rank": 1,
        "name": {"en": "Silver", "de": "Silber"},
        "threshold": 10_000,
        "multiplier": "1.25",
    },
    {
        "code": "gold",
        "rank": 2,
        "name": {"en": "Gold", "de": "Gold"},
        "threshold": 20_000,
        "multiplier": "1.5",
        "flags": ["free_shipping"],
        "purchasable": True,
    },
]


def tiered(
    db: Database, *, ladder: list[dict[str, Any]] | None = None, **settings: Any
) -> Programme:
    """A programme with a tier ladder (``LADDER`` unless given) on spend, no grace days."""
    prog = programme(
        db,
        tier_settings={"metric": "spend", "grace_days": 0, **settings},
    )
    with db.unit_of_work() as session:
        attached = programmes.get(session, prog.id)
        for spec in ladder or LADDER:
            tiers.create(
                session, programme=attached, data=TierCreate.model_validate(spec), actor="test"
            )
    return prog


# --- rewards and coupons ----------------------------------------------------------------------

# The instant the rewards and coupon tests are written around: the actions below default
# to it, so points earned, rewards redeemed and coupons used line up without a clock.
REWARDS_T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)

VOUCHER: dict[str, Any] = {
    "code": "voucher-5",
    "type": "amount_discount",
    "name": {"de": "5-€-Gutschein", "en": "€5 voucher"},
    "points_cost": 500,
    "value_minor": 500,
}


def reward(db: Database, prog: Programme, **spec: Any) -> Reward:
    """A catalogue reward (a €5 voucher unless ``spec`` says otherwise), detached."""
    data = {**VOUCHER, "code": unique("r"), **spec}
    with db.unit_of_work() as session:
        created = catalogue.create(
            session, programme=prog, data=RewardIn.model_validate(data), actor="test"
        )
        session.expunge(created)
        return created


LEDGER_T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


def adjust(
    db: Database, who: Member, points: int, *, at: datetime = LEDGER_T0, **kwargs: Any
) -> Keyed[AdjustmentResult]:
    """A manual adjustment of ``points`` (reason "ledger test" unless given), at ``at``."""
    reason = kwargs.pop("reason", "ledger test")
    with db.unit_of_work() as session:
        return adjustments.adjust(
            session,
            member=who,
            adjustment=Adjustment(points, reason, **kwargs),
            actor="admin@example.com",
            now=at,
        )


def earn(
    db: Database, prog: Programme, who: Member, points: int, at: datetime = REWARDS_T0
) -> None:
    """Points available at once, earned at ``at`` (expiring per the programme)."""
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=at)
        writer.earn(
            writer.account(who.id),
            programme=prog,
            points=points,
            earned_at=at,
            details={"template": "adjust", "params": {"reason": "test"}},
            pending=False,
        )
        writer.flush()


def redeem(
    db: Database,
    who: Member,
    reward: Reward,
    *,
    key: str | None = None,
    now: datetime = REWARDS_T0,
) -> Keyed[RedemptionResult]:
    with db.unit_of_work() as session:
        return redemptions.redeem(
            session, member_id=who.id, key=key or unique("k"), reward_id=reward.id, now=now
        )


def cancel(
    db: Database, redemption_id: str | uuid.UUID, *, now: datetime = REWARDS_T0
) -> Redemption:
    with db.unit_of_work() as session:
        done = redemptions.cancel(
            session, redemption_id=uuid.UUID(str(redemption_id)), actor="test", now=now
        )
        session.expunge(done)
        return done


def reward_row(db: Database, reward: Reward) -> Reward:
    with db.unit_of_work(write=False) as session:
        return session.get_one(Reward, reward.id)


def coupon_of(db: Database, redeemed: Keyed[RedemptionResult]) -> Coupon:
    """The coupon a redemption issued."""
    assert redeemed.result.coupon is not None
    with db.unit_of_work(write=False) as session:
        return session.get_one(Coupon, redeemed.result.coupon.id)


def coupon(
    db: Database, prog: Programme, who: Member | None = None, **spec: Any
) -> tuple[Member, Coupon]:
    """A coupon issued the way members get one: ``who`` (a new member unless given) earns
    the points and redeems a coupon reward (a €5 voucher unless ``spec`` says otherwise)."""
    holder = who if who is not None else member(db, prog)
    offer = reward(db, prog, **spec)
    earn(db, prog, holder, offer.points_cost)
    return holder, coupon_of(db, redeem(db, holder, offer))


def use_coupon(
    db: Database,
    prog: Programme,
    code: str,
    order_id: str,
    *,
    amount_minor: int | None = 2000,
    lines: list[tuple[str, int, int]] | None = None,
    now: Any = REWARDS_T0,
) -> Keyed[CouponUseOut]:
    """Use a coupon on an order: a cart of ``lines`` (sku, quantity, unit price), else one
    line of ``amount_minor``, else no cart at all."""
    basket = None
    if lines is not None:
        basket = _cart(*lines)
    elif amount_minor is not None:
        basket = _cart(("x", 1, amount_minor))
    with db.unit_of_work() as session:
        return coupons.redeem(
            session,
            code=code,
            order_id=order_id,
            programme=prog,
            cart=basket,
            actor="test",
            now=now,
        )


def _cart(*lines: tuple[str, int, int]) -> Cart:
    return Cart(
        currency="EUR",
        lines=tuple(CartLine(sku, quantity, price) for sku, quantity, price in lines),
        member_id=None,
    )


# --- challenges -------------------------------------------------------------------------------

# May 2026 in Berlin, [1 May 00:00, 1 June 00:00) local time: the challenge's default window.
MAY = (
    datetime(2026, 5, 1, tzinfo=UTC) - timedelta(hours=2),
    datetime(2026, 6, 1, tzinfo=UTC) - timedelta(hours=2),
)
CHALLENGE_NAME = {"de": "3 Einkäufe im Mai", "en": "3 purchases in May"}


def challenge(
    db: Database,
    prog: Programme,
    *,
    activate: bool = True,
    now: datetime = datetime(2026, 4, 26, 10, 0, tzinfo=UTC),  # before MAY starts
    **spec: Any,
) -> Challenge:
    """A challenge, activated unless ``activate=False``: three purchases in ``MAY`` for
    300 points unless ``spec`` says otherwise."""
    data: dict[str, Any] = {
        "code": unique("c"),
        "name": CHALLENGE_NAME,
        "trigger": ["purchase"],
        "goal": {"type": "count", "target": 3},
        "window": {"type": "fixed", "starts_at": MAY[0].isoformat(), "ends_at": MAY[1].isoformat()},
        "reward": {"points": 300},
    }
    data.update(spec)
    with db.unit_of_work() as session:
        created = challenges.create(
            session, programme=prog, spec=ChallengeSpec.model_validate(data), actor="test"
        )
        if activate:
            created = challenges.activate(session, created, actor="test", now=now)
        return created


# --- campaigns --------------------------------------------------------------------------------


def campaign_window(days_before: int = 1, days_after: int = 6) -> dict[str, str]:
    """A campaign window around the test clock's now."""
    now = utc_now()
    return {
        "starts_at": (now - timedelta(days=days_before)).isoformat(),
        "ends_at": (now + timedelta(days=days_after)).isoformat(),
    }


BIO_WOCHE: dict[str, Any] = {
    "name": "Bio-Woche",
    "boost": {"type": "multiplier", "factor": "3", "line_condition": "'organic' in line.tags"},
}
"""A campaign tripling the base points of organic lines (``campaign(db, prog, **BIO_WOCHE)``)."""


def campaign(db: Database, prog: Programme, *, activate: bool = True, **spec: Any) -> Campaign:
    """A campaign, activated unless ``activate=False``: ``BIO_WOCHE`` in a window from a
    day ago to six days ahead with a 10 % holdout unless ``spec`` says otherwise."""
    data: dict[str, Any] = {"code": unique("cmp"), "window": campaign_window(), **BIO_WOCHE}
    data.update(spec)
    with db.unit_of_work() as session:
        created = campaigns.create(
            session,
            programme=programmes.get(session, prog.id),  # current: tiers added since count
            spec=CampaignSpec.model_validate(data),
            actor="test",
        )
        if activate:
            created = campaigns.activate(session, created, actor="test")
        session.expunge(created)
        return created


HERBST: dict[str, Any] = {
    "kind": "offer",
    "name": "Herbst-Geschenk",
    "offer": {"points": 200},
    "holdout_percent": 0,
}
"""An offer of 200 points to everybody, without a control group."""


def offer(db: Database, prog: Programme, *, activate: bool = True, **spec: Any) -> Campaign:
    """A targeted offer (``HERBST`` unless ``spec`` says otherwise), activated — but not
    given: ``treu.campaigns.offers.offers.give`` gives it — unless ``activate=False``."""
    data: dict[str, Any] = {"code": unique("offer"), "window": campaign_window(), **HERBST}
    data.update(spec)
    with db.unit_of_work() as session:
        created = campaigns.create(
            session,
            programme=programmes.get(session, prog.id),
            spec=CampaignSpec.model_validate(data),
            actor="test",
        )
        if activate:
            created = campaigns.activate(session, created, actor="test")
        session.expunge(created)
        return created


def members_in_arms(
    db: Database, prog: Programme, found: Campaign, *, treated: int, held_out: int
) -> tuple[list[Member], list[Member]]:
    """Enrol members until there are ``treated`` and ``held_out`` ones in the campaign's
    arms (its holdout must be above 0 for held-out ones)."""
    holdout = int(found.spec.get("holdout_percent", 10))
    arms: tuple[list[Member], list[Member]] = ([], [])
    for _ in range(2_000):
        if len(arms[0]) >= treated and len(arms[1]) >= held_out:
            return arms
        who = member(db, prog)
        if arm_of(found.id, who.id, holdout) is Arm.held_out:
            if len(arms[1]) < held_out:
                arms[1].append(who)
        elif len(arms[0]) < treated:
            arms[0].append(who)
    raise AssertionError("could not fill the arms")


# --- API keys ---------------------------------------------------------------------------------


def api_key(db: Database, *, scopes: list[str], name: str | None = None) -> tuple[ApiKey, str]:
    """An API key with ``scopes``: the stored key and its plaintext (shown once)."""
    with db.unit_of_work() as session:
        key, plaintext = api_keys.create(session, name=name or unique("key"), scopes=scopes)
        session.expunge(key)
        return key, plaintext


def delivery(
    db: Database, who: Member, *, channel: str = "inbox", event_type: str = "coupon_issued"
) -> uuid.UUID:
    """A message delivered to ``who`` just now (a ``deliveries`` row as the worker leaves
    it), without the outbox and the worker; its id."""
    now = utc_now()
    delivery_id = uuid.uuid4()
    with db.unit_of_work() as session:
        session.add(
            Delivery(
                id=delivery_id,
                dedupe_key=f"test:{delivery_id}",
                programme_id=who.programme_id,
                member_id=who.id,
                channel=channel,
                target=str(who.id),
                event_type=event_type,
                payload={"member_id": str(who.id)},
                status="delivered",
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                delivered_at=now,
            )
        )
    return delivery_id
