"""Next-best offer for a member: ``GET /v1/members/{id}/recommendations``
(``treu.insights.offers``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query

from treu.api.deps import DB, MembersRead, RequestedLang
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.insights.offers import RecommendationsOut, recommendations
from treu.web.routing import Router

router = Router(prefix="/v1", tags=["members"], responses=PROBLEM_RESPONSES)

MEMBER_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}


@router.get(
    "/members/{member_id}/recommendations",
    response_model=RecommendationsOut,
    responses=MEMBER_NOT_FOUND,
)
def member_recommendations(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    requested: RequestedLang,
    k: Annotated[int, Query(ge=1, le=50, description="At most k rewards and k products")] = 5,
) -> RecommendationsOut:
    """Rewards this member can redeem now and products they are likely to buy, best first,
    each with a `reason` (`code` and a `text` in the member's language, e.g.
    `{"code": "often_bought", "text": "Sie kaufen oft Bio-Milchprodukte"}`). Rewards are
    filtered by the redemption's own eligibility (balance, tier, stock, limits, dates);
    products come from the member's purchase lines of the last year, blended with what the
    programme's members bought most in the last 90 days (which carries members with little
    history)."""
    with db.unit_of_work(write=False) as session:
        return recommendations(session, member_id=member_id, k=k, requested=requested)
