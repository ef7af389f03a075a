"""Rewards: what the member can redeem now and what is locked, and why — the reasons
come from the rewards service (``treu.rewards.eligibility``, as ``GET
/v1/members/{id}/rewards`` lists them), never from the template.

Redeeming is two steps without JavaScript: the reward's button opens a confirmation
page (what it costs, the balance after), whose form posts with an idempotency key made
when that page was drawn. The handler makes the API's redemption call (the same retries
on a lost unique-key race): a double click or a reload redeems once, and every send
lands on the same coupon. A refusal (the points were spent meanwhile, the reward sold
out) re-draws the confirmation page with status 422 and the service's reasons."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.errors import NotFound, TreuError
from treu.kit.ids import new_id
from treu.kit.text import N_
from treu.programmes.service import programmes
from treu.rewards.errors import RewardNotFound
from treu.rewards.schemas import MemberRewardOut, MemberRewardsOut
from treu.rewards.service import redemptions
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render
from treu.web.security import check_csrf

REDEEM_ATTEMPTS = 3
"""As the API's ``POST /v1/members/{id}/redemptions``."""
KEY_PREFIX = "portal:"
"""The portal's keys apart from API clients' (one member's keys share one namespace)."""

PORTAL.link("/portal/rewards", N_("Rewards"), order=30)


def _offer(request: Request, member: Signed) -> tuple[MemberRewardsOut, str]:
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        offer = redemptions.member_rewards(session, member_id=member.id, lang=language(request))
        return offer, timezone


def _one(offer: MemberRewardsOut, reward_id: uuid.UUID) -> MemberRewardOut:
    for item in (*offer.redeemable, *offer.locked):
        if item.id == reward_id:
            return item
    raise RewardNotFound(f"no reward {reward_id} for this member")


@router.get("/rewards")
def rewards_page(request: Request, member: Annotated[Signed, Depends(need_member)]) -> Response:
    offer, timezone = _offer(request, member)
    return render(
        request,
        "portal/rewards.html",
        timezone=timezone,
        member=member,
        offer=offer,
        done=request.query_params.get("done"),
    )


def _confirmation(
    request: Request,
    member: Signed,
    reward_id: uuid.UUID,
    *,
    status_code: int = 200,
    failed: bool = False,
) -> Response:
    offer, timezone = _offer(request, member)
    reward = _one(offer, reward_id)
    return render(
        request,
        "portal/redeem.html",
        status_code=status_code,
        timezone=timezone,
        member=member,
        reward=reward,
        balance=offer.available_points,
        after=offer.available_points - reward.points_cost,
        key=str(new_id()),
        failed=failed,
    )


@router.get("/rewards/{reward_id}/redeem")
def confirm_page(
    request: Request, reward_id: uuid.UUID, member: Annotated[Signed, Depends(need_member)]
) -> Response:
    return _confirmation(request, member, reward_id)


@router.post("/rewards/{reward_id}/redeem")
def redeem(
    request: Request,
    reward_id: uuid.UUID,
    member: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    key: Annotated[str, Form(min_length=1, max_length=100)],
) -> Response:
    check_csrf(csrf, member.csrf)
    try:
        done = database(request).retrying(
            lambda session, attempt: redemptions.redeem(
                session,
                member_id=member.id,
                key=KEY_PREFIX + key,
                reward_id=reward_id,
                actor="portal",
                optimistic=attempt == 0,
            ),
            attempts=REDEEM_ATTEMPTS,
        )
    except NotFound:
        raise
    except TreuError:
        return _confirmation(request, member, reward_id, status_code=422, failed=True)
    if done.result.coupon is not None:
        return RedirectResponse(f"/portal/coupons/{done.result.coupon.id}?new=1", status_code=303)
    return RedirectResponse("/portal/rewards?done=redeemed", status_code=303)
