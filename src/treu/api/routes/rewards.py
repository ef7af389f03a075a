"""The rewards catalogue (admin), what a member can redeem, redemptions and cancelling."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Query, Response, status
from sqlalchemy.orm import Session

from treu.api.deps import DB, Admin, MembersRead, MembersWrite, RequestedLang, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.errors import Invalid
from treu.kit.lang import Lang, member_language
from treu.kit.pagination import InvalidCursor
from treu.members.service import members
from treu.programmes.service import programmes
from treu.rewards.coupons import coupons
from treu.rewards.errors import RewardNotFound
from treu.rewards.models import CouponStatus, Redemption
from treu.rewards.schemas import (
    CancelIn,
    CouponList,
    MemberRewardsOut,
    RedemptionIn,
    RedemptionList,
    RedemptionOut,
    RedemptionResult,
    RewardIn,
    RewardList,
    RewardOut,
    RewardPatch,
)
from treu.rewards.service import catalogue, redemptions
from treu.web.routing import Router

router = Router(prefix="/v1", tags=["rewards"], responses=PROBLEM_RESPONSES)
CatalogueRead = Annotated[Principal, Depends(require("admin|members:read"))]

REWARD_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such programme or reward"}
}
MEMBER_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}
REDEEM_ATTEMPTS = 3


def _bad_cursor() -> Invalid:
    return Invalid("cursor is not valid; use next_cursor from the previous page", field="cursor")


# --- catalogue (admin) ---------------------------------------------------------------------


@router.post(
    "/programmes/{programme}/rewards",
    status_code=status.HTTP_201_CREATED,
    response_model=RewardOut,
    responses=REWARD_NOT_FOUND
    | {409: {"model": Problem, "description": "The code is taken in this programme"}},
)
def create_reward(programme: str, data: RewardIn, db: DB, key: Admin) -> RewardOut:
    """Add a reward to the programme's catalogue (admin). What each type needs: a
    `percent_bp` for `percent_discount`, `value_minor` for `amount_discount` and
    `wallet_credit`, a `sku` for `free_product`, an `event` for `experience`, a `charity`
    code for `donation`."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        reward = catalogue.create(session, programme=found, data=data, actor=key.actor)
        return catalogue.out(reward, found.slug)


@router.get(
    "/programmes/{programme}/rewards", response_model=RewardList, responses=REWARD_NOT_FOUND
)
def list_rewards(
    programme: str,
    db: DB,
    _key: CatalogueRead,
    include_archived: Annotated[bool, Query(description="Also archived rewards")] = False,
) -> RewardList:
    """The catalogue, cheapest first (admin or members:read)."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        items = catalogue.all(session, programme=found, include_archived=include_archived)
        return RewardList(items=[catalogue.out(r, found.slug) for r in items])


@router.get(
    "/programmes/{programme}/rewards/{reward_id}",
    response_model=RewardOut,
    responses=REWARD_NOT_FOUND,
)
def get_programme_reward(
    programme: str, reward_id: uuid.UUID, db: DB, _key: CatalogueRead
) -> RewardOut:
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        reward = catalogue.get(session, reward_id)
        if reward.programme_id != found.id:
            raise RewardNotFound(f"no reward {reward_id} in programme {found.slug!r}")
        return catalogue.out(reward, found.slug)


@router.patch(
    "/programmes/{programme}/rewards/{reward_id}",
    response_model=RewardOut,
    responses=REWARD_NOT_FOUND,
)
def update_reward(
    programme: str, reward_id: uuid.UUID, data: RewardPatch, db: DB, key: Admin
) -> RewardOut:
    """Change a reward (admin); send only what changes. Coupons already issued keep the
    terms they were issued with. `stock` restocks: what is left moves by the same amount
    and cannot drop below zero (`stock_below_redeemed`); `null` makes it unlimited."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        reward = catalogue.update(
            session, programme=found, reward_id=reward_id, patch=data, actor=key.actor
        )
        return catalogue.out(reward, found.slug)


@router.delete(
    "/programmes/{programme}/rewards/{reward_id}",
    response_model=RewardOut,
    responses=REWARD_NOT_FOUND,
)
def archive_reward(programme: str, reward_id: uuid.UUID, db: DB, key: Admin) -> RewardOut:
    """Take a reward out of the catalogue (admin). It is archived, not deleted:
    redemptions refer to it, and coupons already issued stay valid."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        reward = catalogue.archive(session, programme=found, reward_id=reward_id, actor=key.actor)
        return catalogue.out(reward, found.slug)


@router.get("/rewards/{reward_id}", response_model=RewardOut, responses=REWARD_NOT_FOUND)
def get_reward(reward_id: uuid.UUID, db: DB, _key: CatalogueRead) -> RewardOut:
    with db.unit_of_work(write=False) as session:
        reward = catalogue.get(session, reward_id)
        return catalogue.out(reward, programmes.get(session, reward.programme_id).slug)


# --- members -------------------------------------------------------------------------------


@router.get(
    "/members/{member_id}/rewards",
    response_model=MemberRewardsOut,
    tags=["members"],
    responses=MEMBER_NOT_FOUND,
)
def member_rewards(
    member_id: uuid.UUID, db: DB, _key: MembersRead, requested: RequestedLang
) -> MemberRewardsOut:
    """What this member can redeem now (`redeemable`) and what is locked and why
    (`locked`, each with `reasons`: a machine `code`, a `text` in `lang` and the facts
    behind it, e.g. `{"code": "insufficient_points", "text": "Noch 260 Punkte nötig",
    "params": {"missing_points": 260, …}}`)."""
    with db.unit_of_work(write=False) as session:
        lang = member_language(requested, members.get(session, member_id).language)
        return redemptions.member_rewards(session, member_id=member_id, lang=lang)


@router.post(
    "/members/{member_id}/redemptions",
    status_code=status.HTTP_201_CREATED,
    response_model=RedemptionResult,
    tags=["members"],
    responses={
        200: {"description": "Replay of an earlier request with the same Idempotency-Key"},
        404: {"model": Problem, "description": "No such member or reward"},
        409: {
            "model": Problem,
            "description": "`out_of_stock`, `member_limit_reached`, or `idempotency_conflict` "
            "(the key was used for another reward)",
        },
        422: {
            "model": Problem,
            "description": "`insufficient_points`, `reward_locked` (tier, membership age, "
            "validity, member blocked; see `reasons`), `member_closed`, validation",
        },
        503: {"model": Problem, "description": "`busy`: a lock could not be taken; retry"},
    },
)
def redeem(
    member_id: uuid.UUID,
    data: RedemptionIn,
    db: DB,
    key: MembersWrite,
    idempotency_key: Annotated[
        str,
        Header(
            min_length=1,
            max_length=200,
            description="Required: a retry with the same key redeems once and answers "
            "the same; another reward under the same key is a 409",
        ),
    ],
) -> Response:
    """Redeem a reward: burn the points (earliest expiry first), take one unit of stock
    and issue the coupon (discounts, free products, tickets) or book the donation or
    wallet credit — in one transaction (members:write)."""
    # The first attempt does not look for an earlier request with this key: a replay
    # fails on the unique (member, key) constraint, and the next attempt finds it. (Or a
    # coupon code collision, about one in 2**74: a fresh code.)
    done = db.retrying(
        lambda session, attempt: redemptions.redeem(
            session,
            member_id=member_id,
            key=idempotency_key,
            reward_id=data.reward_id,
            reward_code=data.reward,
            actor=key.actor,
            optimistic=attempt == 0,
        ),
        attempts=REDEEM_ATTEMPTS,
    )
    # Encoded here, once: the answer is the declared model already (a hot path).
    return Response(
        done.result.model_dump_json(),
        status_code=done.http_status,
        media_type="application/json",
    )


@router.get(
    "/members/{member_id}/redemptions",
    response_model=RedemptionList,
    tags=["members"],
    responses=MEMBER_NOT_FOUND,
)
def member_redemptions(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    requested: RequestedLang,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> RedemptionList:
    """The member's redemptions, newest first, each with its coupon."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        lang = member_language(requested, member.language)
        timezone = programmes.get(session, member.programme_id).timezone
        try:
            rows, next_cursor = redemptions.for_member(
                session, member_id=member_id, limit=limit, cursor=cursor
            )
        except (InvalidCursor, ValueError) as exc:
            raise _bad_cursor() from exc
        return RedemptionList(
            items=[redemptions.public(r, c, lang=lang, timezone=timezone) for r, c in rows],
            next_cursor=next_cursor,
        )


@router.get(
    "/members/{member_id}/coupons",
    response_model=CouponList,
    tags=["members"],
    responses=MEMBER_NOT_FOUND,
)
def member_coupons(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    requested: RequestedLang,
    coupon_status: Annotated[
        CouponStatus | None, Query(alias="status", description="Only coupons in this status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> CouponList:
    """The member's coupons, newest first (`?status=active`: the ones to use)."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        lang = member_language(requested, member.language)
        timezone = programmes.get(session, member.programme_id).timezone
        try:
            rows, next_cursor = coupons.for_member(
                session,
                member_id=member_id,
                status=coupon_status.value if coupon_status else None,
                limit=limit,
                cursor=cursor,
            )
        except (InvalidCursor, ValueError) as exc:
            raise _bad_cursor() from exc
        return CouponList(
            items=[coupons.public(c, lang=lang, timezone=timezone) for c in rows],
            next_cursor=next_cursor,
        )


# --- redemptions ---------------------------------------------------------------------------


@router.get(
    "/redemptions/{redemption_id}",
    response_model=RedemptionOut,
    responses={404: {"model": Problem, "description": "No such redemption"}},
)
def get_redemption(
    redemption_id: uuid.UUID, db: DB, _key: MembersRead, requested: RequestedLang
) -> RedemptionOut:
    with db.unit_of_work(write=False) as session:
        redemption = redemptions.get(session, redemption_id)
        return _redemption_out(session, redemption, requested)


@router.post(
    "/redemptions/{redemption_id}/cancel",
    response_model=RedemptionOut,
    responses={
        404: {"model": Problem, "description": "No such redemption"},
        409: {
            "model": Problem,
            "description": "`redemption_not_cancellable`: the coupon was used or expired, "
            "or the reward (donation, wallet credit) was fulfilled at once",
        },
    },
)
def cancel_redemption(
    redemption_id: uuid.UUID,
    db: DB,
    key: MembersWrite,
    requested: RequestedLang,
    data: Annotated[CancelIn | None, Body()] = None,
) -> RedemptionOut:
    """Cancel a redemption whose coupon is unused (members:write): the coupon is
    cancelled, the stock restored and, if the reward's `refund_on_cancel` says so, the
    points given back to the lots they came from. Cancelling again answers the same."""
    with db.unit_of_work() as session:
        redemption = redemptions.cancel(
            session,
            redemption_id=redemption_id,
            actor=key.actor,
            reason=data.reason if data is not None else None,
        )
        return _redemption_out(session, redemption, requested)


def _redemption_out(
    session: Session, redemption: Redemption, requested: Lang | None
) -> RedemptionOut:
    lang = member_language(requested, members.get(session, redemption.member_id).language)
    coupon = redemptions.coupon_of(session, redemption.id)
    timezone = programmes.get(session, redemption.programme_id).timezone
    return redemptions.public(redemption, coupon, lang=lang, timezone=timezone)
