"""Next-best offer for one member of the programme (``GET /v1/members/{id}/recommendations``
and the portal's home page): rewards they can redeem now and products they are likely to
buy, each with a reason in their language.

Products come first from the member's stored recommendations: the nightly training
(``treu insights train``, step ``recommend``) runs ``treu.insights.recommend`` — buy
again, item-item similarity and popularity over the whole programme — and keeps each
member's top 20 in ``member_recommendations`` with its source (``again``, ``similar``,
``popular``). A member without stored rows (joined or first bought since the last
training, or not active in the last year) is scored per request as below.

This answers one request from the database in a fixed number of statements: one
statement reads the member's stored recommendations, or — only if there are none, in the
same statement — the member's purchase lines of the last year summed per product; the
programme's most bought products of the last 90 days (cached per process for five
minutes, read only for the fallback) and the rewards catalogue (the checkout's cache),
filtered by the redemption's own eligibility (``lock_reasons``: balance, tier, stock,
per-member limits, dates; the tier and the held redemptions are read only if some reward
asks for them). The API reads the member, programme and balance first; the portal's home
page has them already. In the fallback, the member's lines are summed per product by the
database; scoring is Python over the products they bought:

* a product's score blends the member's own recency-weighted purchases of it (each line
  weighs ``0.5 ** (age / HALF_LIFE_DAYS)`` at the middle of its age band), their share
  of spending in its category (the category stands in for item-item similarity here) and
  the programme's popularity, which weighs ``m / (m + purchases)``: it carries members
  with little history and fades as theirs grows — the same blend as the file recommender;
* rewards are only those redeemable now; a free product they often buy ranks first, then
  rewards by how much of the balance they use (the most valuable affordable one first);
* the reason names the category, with a whole sentence per category so that languages can
  build their own compounds ("Sie kaufen oft Bio-Milchprodukte"); an unknown category is
  named as stored.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    Float,
    Integer,
    String,
    Text,
    Uuid,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from treu.db.base import UTCDateTime, fetch
from treu.events.models import PurchaseLine
from treu.kit.cache import StampedCache
from treu.kit.lang import Lang, member_language
from treu.kit.text import N_, translate
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.members.service import members
from treu.programmes.models import Programme
from treu.rewards.coupons import local_name
from treu.rewards.eligibility import MemberFacts, lock_reasons, member_segments, member_tier
from treu.rewards.models import Redemption, RedemptionStatus
from treu.rewards.service import catalogue, redemptions
from treu.segments.models import MemberRecommendation, RecommendationSource

HALF_LIFE_DAYS = 120.0
HISTORY_DAYS = 365
POPULAR_DAYS = 90
POPULAR_LIMIT = 200
POPULAR_SECONDS = 300.0
RECENCY_BANDS = (30, 90, 180, HISTORY_DAYS)
"""A line's recency weight is ``0.5 ** (age / HALF_LIFE_DAYS)`` at the middle of its age
band (days): summed by the database, portable to SQLite, close to the smooth decay."""
POPULAR_PURCHASES = 3.0  # m in m / (m + purchases)
CATEGORY_WEIGHT = 0.3
OFTEN_SHARE = 0.2  # a category with at least this share of the member's purchases is "often"

_BAND_WEIGHTS = tuple(
    (days, 0.5 ** (((days + low) / 2) / HALF_LIFE_DAYS))
    for low, days in zip((0, *RECENCY_BANDS[:-1]), RECENCY_BANDS, strict=True)
)

OFTEN: dict[str, tuple[str, str]] = {
    "apparel": (N_("You often buy clothing"), N_("You often buy organic clothing")),
    "bakery": (
        N_("You often buy bread and pastries"),
        N_("You often buy organic bread and pastries"),
    ),
    "coffee": (N_("You often buy coffee"), N_("You often buy organic coffee")),
    "cosmetics": (N_("You often buy cosmetics"), N_("You often buy organic cosmetics")),
    "dairy": (N_("You often buy dairy"), N_("You often buy organic dairy")),
    "drinks": (N_("You often buy drinks"), N_("You often buy organic drinks")),
    "household": (
        N_("You often buy household goods"),
        N_("You often buy organic household goods"),
    ),
    "produce": (
        N_("You often buy fruit and vegetables"),
        N_("You often buy organic fruit and vegetables"),
    ),
    "snacks": (N_("You often buy snacks"), N_("You often buy organic snacks")),
}
"""The reason for a category the member buys often: plain and organic, whole sentences."""
OFTEN_OTHER = N_("You often buy {category}")
OFTEN_ORGANIC = N_("You often buy organic products")
OFTEN_THIS = N_("You buy this often")
POPULAR = N_("Popular with other members")
SIMILAR = N_("Goes with what you buy")
AFFORDABLE = N_("You have enough points for it")


class ReasonOut(BaseModel):
    code: str = Field(description="often_bought, similar, popular or affordable")
    text: str = Field(description="In the member's language")


class ProductOffer(BaseModel):
    sku: str
    name: str | None
    category: str | None
    score: float
    reason: ReasonOut


class RewardOffer(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    summary: str
    points_cost: int
    score: float
    reason: ReasonOut


class RecommendationsOut(BaseModel):
    member_id: uuid.UUID
    lang: str
    available_points: int
    rewards: list[RewardOffer] = Field(description="Redeemable now, best first (at most k)")
    products: list[ProductOffer] = Field(description="Best first (at most k)")


_OWN = "own"


def _member_products() -> Any:
    """The member's stored recommendations (``source``, sku, name, category, 0, score,
    rank) or, only when there are none, the member's products of the last year (``own``,
    sku, name, category, whether organic, summed recency weight — a step per age band —,
    the member's purchase count): one statement either way, so the page's statement count
    does not depend on whether the member was trained."""
    stored = select(
        MemberRecommendation.source,
        MemberRecommendation.sku,
        MemberRecommendation.name,
        MemberRecommendation.category,
        literal(0, Integer),
        cast(MemberRecommendation.score, Float),
        cast(MemberRecommendation.rank, Integer),
    ).where(MemberRecommendation.member_id == bindparam("member_id", type_=Uuid()))
    untrained = ~exists().where(
        MemberRecommendation.member_id == bindparam("member_id", type_=Uuid())
    )
    at = PurchaseLine.occurred_at
    kept = (
        PurchaseLine.member_id == bindparam("member_id", type_=Uuid()),
        at > bindparam("since", type_=UTCDateTime()),
        at <= bindparam("now", type_=UTCDateTime()),
        PurchaseLine.quantity > PurchaseLine.returned_quantity,
    )
    weight = case(
        *(
            (at > bindparam(f"band_{i}", type_=UTCDateTime()), w)
            for i, (_, w) in enumerate(_BAND_WEIGHTS[:-1])
        ),
        else_=_BAND_WEIGHTS[-1][1],
    )
    purchases = select(func.count(func.distinct(PurchaseLine.event_id))).where(*kept)
    own = (
        select(
            literal(_OWN, String),
            PurchaseLine.sku,
            func.max(PurchaseLine.name),
            func.max(PurchaseLine.category),
            func.max(case((cast(PurchaseLine.tags, Text).like('%"organic"%'), 1), else_=0)),
            cast(func.sum(weight), Float),
            cast(purchases.scalar_subquery(), Integer),
        )
        .where(*kept, untrained)
        .group_by(PurchaseLine.sku)
    )
    return union_all(stored, own)


_MEMBER_PRODUCTS = _member_products()


@dataclass
class _Product:
    name: str | None
    category: str | None
    organic: bool
    own: float = 0.0
    popular: float = 0.0


def _often(category: str | None, organic: bool, lang: str) -> str:
    if category in OFTEN:
        plain, bio = OFTEN[category]
        return translate(lang, bio if organic else plain)
    if category is None:
        return translate(lang, OFTEN_ORGANIC if organic else OFTEN_THIS)
    return (
        translate(lang, OFTEN_ORGANIC)
        if organic
        else translate(lang, OFTEN_OTHER, category=category)
    )


def recommendations(
    session: Session,
    *,
    member_id: uuid.UUID,
    k: int = 5,
    requested: Lang | None = None,
    now: datetime | None = None,
) -> RecommendationsOut:
    """Up to ``k`` rewards and ``k`` products for the member (see the module docstring):
    the member, the programme, the balance, then ``offers``."""
    now = now or utc_now()
    member = members.get(session, member_id)
    programme = session.get_one(Programme, member.programme_id)
    lang = member_language(requested, member.language)
    balance = ledger.balance(session, member_id=member.id, expiring_limit=0)
    return offers(
        session,
        member=member,
        programme=programme,
        available_points=balance.available,
        k=k,
        lang=lang,
        now=now,
    )


_UNKNOWN = "\0unknown"


def offers(
    session: Session,
    *,
    member: Member,
    programme: Programme,
    available_points: int,
    k: int,
    lang: str,
    now: datetime,
    tier: str | None = _UNKNOWN,
) -> RecommendationsOut:
    """The recommendations for a member whose row, programme and balance the caller has
    read (the portal's home page has them anyway): the member's stored recommendations or
    lines (one statement), the programme's popular products (cached, fallback only), the
    rewards catalogue (cached), and the tier and held redemptions only if a reward asks
    for them. ``tier``: the member's tier code if
    the caller knows it."""
    cached = catalogue.cached(session, programme.id)
    if tier == _UNKNOWN:
        needs_tier = any(v.min_tier for v in cached.rewards)
        tier = member_tier(session, member.id, now) if needs_tier else None
    facts = MemberFacts(
        member_id=member.id,
        status=member.status,
        enrolled_at=member.enrolled_at,
        available_points=available_points,
        tier=tier,
        held=_held(session, member.id) if any(v.per_member_limit for v in cached.rewards) else {},
        segments=member_segments(session, member.id, cached.rewards),
    )
    redeemable = [
        v
        for v in cached.rewards
        if not lock_reasons(v, facts, cached.tiers, now, programme.timezone)
    ]

    # One statement: the member's stored recommendations, or (none stored) one row per
    # product the member bought in the last year (not per line), the database summing the
    # recency weights and counting the member's purchases; Python only blends a few
    # hundred products.
    params = {f"band_{i}": now - timedelta(days=days) for i, (days, _) in enumerate(_BAND_WEIGHTS)}
    rows = fetch(
        session.connection(),
        _MEMBER_PRODUCTS,
        {"member_id": member.id, "since": now - timedelta(days=HISTORY_DAYS), "now": now, **params},
    )
    if rows and rows[0][0] != _OWN:
        product_offers, products, own_score = _stored(list(rows), k, lang)
    else:
        product_offers, products, own_score = _scored(
            [tuple(r[1:]) for r in rows], popular(session, programme.id, now), k, lang
        )

    balance = max(available_points, 1)
    ranked: list[tuple[float, RewardOffer]] = []
    for view in redeemable:
        liked = own_score.get(view.sku, 0.0) if view.sku is not None else 0.0
        score = liked + 0.5 * min(view.points_cost / balance, 1.0)
        if liked > 0 and view.sku is not None:
            p = products[view.sku]
            reason = ReasonOut(code="often_bought", text=_often(p.category, p.organic, lang))
        else:
            reason = ReasonOut(code="affordable", text=translate(lang, AFFORDABLE))
        offer = RewardOffer(
            id=view.id,
            code=view.code,
            name=local_name(view.name, lang),
            summary=redemptions.summary_of(view, programme, lang),
            points_cost=view.points_cost,
            score=round(score, 4),
            reason=reason,
        )
        ranked.append((score, offer))
    ranked.sort(key=lambda r: (-r[0], r[1].points_cost, r[1].code))
    return RecommendationsOut(
        member_id=member.id,
        lang=lang,
        available_points=available_points,
        rewards=[offer for _, offer in ranked[:k]],
        products=product_offers,
    )


def _stored(
    rows: list[Any], k: int, lang: str
) -> tuple[list[ProductOffer], dict[str, _Product], dict[str, float]]:
    """Offers from the stored recommendations (``source``, sku, name, category, _, score,
    rank): best rank first; the reason follows the source. A reward's product counts as
    liked when it is one the member buys again."""
    ranked = sorted(rows, key=lambda r: r[6])
    products = {sku: _Product(name, category, False) for _, sku, name, category, *_ in ranked}
    again = {sku: float(score) for source, sku, _, _, _, score, _ in ranked if source == "again"}
    top = max(again.values(), default=0.0)
    own_score = {sku: (score / top if top > 0 else 0.0) for sku, score in again.items()}

    def reason(source: str, category: str | None) -> ReasonOut:
        if source == RecommendationSource.again.value:
            return ReasonOut(code="often_bought", text=_often(category, False, lang))
        if source == RecommendationSource.similar.value:
            return ReasonOut(code="similar", text=translate(lang, SIMILAR))
        return ReasonOut(code="popular", text=translate(lang, POPULAR))

    offers = [
        ProductOffer(
            sku=sku,
            name=name,
            category=category,
            score=round(float(score), 4),
            reason=reason(source, category),
        )
        for source, sku, name, category, _, score, _ in ranked[:k]
    ]
    return offers, products, own_score


def _scored(
    own_rows: list[tuple[Any, ...]],
    popular_rows: list[tuple[str, str | None, str | None, int]],
    k: int,
    lang: str,
) -> tuple[list[ProductOffer], dict[str, _Product], dict[str, float]]:
    """Offers scored per request from the member's products of the last year (sku, name,
    category, organic, summed weight, purchases) and the programme's popular products:
    the fallback for a member without stored recommendations."""
    products: dict[str, _Product] = {}
    by_category: dict[str | None, float] = defaultdict(float)
    organic_weight = 0.0
    bought = own_rows[0][5] if own_rows else 0  # the member's purchases (every row)
    for sku, name, category, organic, weight, _ in own_rows:
        found = products.setdefault(sku, _Product(name, category, bool(organic)))
        found.own += float(weight)
        by_category[category] += float(weight)
        organic_weight += float(weight) if organic else 0.0
    top_buyers = max((n for *_, n in popular_rows), default=0)
    for sku, name, category, n in popular_rows:
        found = products.setdefault(sku, _Product(name, category, False))
        found.popular = n / top_buyers if top_buyers else 0.0

    total = sum(by_category.values())
    top_own = max((p.own for p in products.values()), default=0.0)
    beta = POPULAR_PURCHASES / (POPULAR_PURCHASES + bought)
    organic_share = organic_weight / total if total else 0.0
    scored: list[tuple[float, str, _Product, float]] = []
    for sku, p in products.items():
        share = by_category.get(p.category, 0.0) / total if total else 0.0
        own = p.own / top_own if top_own else 0.0
        score = (1 - beta) * (own + CATEGORY_WEIGHT * share) + beta * p.popular
        scored.append((score, sku, p, share))
    scored.sort(key=lambda s: (-s[0], s[1]))

    def product_reason(p: _Product, share: float) -> ReasonOut:
        if share >= OFTEN_SHARE or p.own >= 1.0:
            text = _often(p.category, p.organic and organic_share >= OFTEN_SHARE, lang)
            return ReasonOut(code="often_bought", text=text)
        return ReasonOut(code="popular", text=translate(lang, POPULAR))

    product_offers = [  # reasons only for the k shown
        ProductOffer(
            sku=sku,
            name=p.name,
            category=p.category,
            score=round(score, 4),
            reason=product_reason(p, share),
        )
        for score, sku, p, share in scored[:k]
    ]

    own_score = {sku: (p.own / top_own if top_own else 0.0) for sku, p in products.items()}
    return product_offers, products, own_score


def _held(session: Session, member_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Redemptions per reward that hold a unit, for per-member limits."""
    rows = fetch(session.connection(), _HELD, {"member_id": member_id})
    return {rid: int(n) for rid, n in rows}


_HELD = (
    select(Redemption.reward_id, func.count())
    .where(
        Redemption.member_id == bindparam("member_id", type_=Uuid()),
        Redemption.status == RedemptionStatus.redeemed.value,
    )
    .group_by(Redemption.reward_id)
)


_popular: StampedCache[tuple[str, uuid.UUID], list[tuple[str, str | None, str | None, int]]] = (
    StampedCache(POPULAR_SECONDS)
)


def popular(
    session: Session, programme_id: uuid.UUID, now: datetime
) -> list[tuple[str, str | None, str | None, int]]:
    """The programme's most bought products of the last ``POPULAR_DAYS`` (sku, name,
    category, members who bought it), cached per process for ``POPULAR_SECONDS``: an
    aggregate over the programme's recent lines is too dear for every page view, and
    popularity moves slowly."""

    def build(_: object) -> list[tuple[str, str | None, str | None, int]]:
        buyers = func.count(PurchaseLine.member_id.distinct())
        rows = session.execute(
            select(
                PurchaseLine.sku,
                func.max(PurchaseLine.name),
                func.max(PurchaseLine.category),
                buyers,
            )
            .where(
                PurchaseLine.programme_id == programme_id,
                PurchaseLine.occurred_at > now - timedelta(days=POPULAR_DAYS),
                PurchaseLine.occurred_at <= now,
                PurchaseLine.member_id.is_not(None),
            )
            .group_by(PurchaseLine.sku)
            .order_by(buyers.desc(), PurchaseLine.sku)
            .limit(POPULAR_LIMIT)
        ).all()
        return [(sku, name, category, int(n)) for sku, name, category, n in rows]

    return _popular.get((str(session.get_bind().engine.url), programme_id), build=build)
