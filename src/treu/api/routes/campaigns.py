from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Query, status
from sqlalchemy.orm import Session

from treu.api.deps import DB, Admin, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.campaigns.models import Campaign, CampaignStatus
from treu.campaigns.offers import offers
from treu.campaigns.schemas import (
    EXAMPLE_BEST_BEFORE,
    EXAMPLE_CAMPAIGN,
    EXAMPLE_OFFER,
    EXAMPLE_WEEKEND,
    CampaignList,
    CampaignOut,
    CampaignSpec,
    CampaignStats,
)
from treu.campaigns.service import campaigns, parse_spec
from treu.campaigns.stats import campaign_stats
from treu.errors import Invalid
from treu.kit.time import utc_now
from treu.messaging.keys import message_keys
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/campaigns", tags=["campaigns"], responses=PROBLEM_RESPONSES)
CampaignsRead = Annotated[Principal, Depends(require("admin|members:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such campaign"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem,
        "description": "Invalid campaign: a bad window, a holdout outside 0-90, an expression "
        "error (with line, column and offset), an unknown tier (unknown_tier) or member",
    }
}
STATUS: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "Not possible in the campaign's status"}
}


def _spec(data: dict[str, Any]) -> CampaignSpec:
    """A valid specification whose offer names a message Treu has (the templates live in
    the messaging package, above the campaigns)."""
    spec = parse_spec(data)
    if spec.offer is not None and spec.offer.template not in message_keys():
        raise Invalid(
            f"no message template {spec.offer.template!r}",
            errors=[
                {
                    "field": "offer.template",
                    "message": f"one of {', '.join(sorted(message_keys()))}",
                }
            ],
        )
    return spec


def _out(
    session: Session, campaign: Campaign, programme: Programme, used: int | None = None
) -> CampaignOut:
    if used is None:
        used = campaigns.budgets_used(session, [campaign]).get(campaign.id, 0)
    return CampaignOut(
        id=campaign.id,
        programme=programme.slug,
        kind=str(campaign.spec.get("kind", "bonus")),
        code=campaign.code,
        name=campaign.name,
        status=campaign.status,
        spec=campaign.spec,
        revision=campaign.revision,
        rule_id=campaign.rule_id,
        running=campaigns.running(campaign, budget_used=used, now=utc_now()),
        budget_used=used,
        activated_at=campaign.activated_at,
        paused_at=campaign.paused_at,
        ended_at=campaign.ended_at,
        given_at=campaign.given_at,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


def _with(session: Session, campaign: Campaign) -> CampaignOut:
    return _out(session, campaign, programmes.get(session, campaign.programme_id))


@router.get("", response_model=CampaignList)
def list_campaigns(
    db: DB,
    _key: CampaignsRead,
    programme: Annotated[str, Query(description="Programme slug or id")],
    campaign_status: Annotated[
        CampaignStatus | None, Query(alias="status", description="Only campaigns in this status")
    ] = None,
) -> CampaignList:
    """The programme's campaigns, oldest first."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        items = campaigns.all(
            session,
            programme_id=found.id,
            status=campaign_status.value if campaign_status is not None else None,
        )
        used = campaigns.budgets_used(session, items)
        return CampaignList(items=[_out(session, c, found, used.get(c.id, 0)) for c in items])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignOut,
    responses={
        **INVALID,
        409: {"model": Problem, "description": "The code is taken (campaign_exists)"},
    },
)
def create_campaign(
    data: Annotated[
        dict[str, Any],
        Body(
            description="A campaign specification (see docs/campaigns.md) plus `programme`",
            openapi_examples={
                "organic": {
                    "summary": "Bio-Woche: \u00d73 on organic lines",
                    "value": EXAMPLE_CAMPAIGN,
                },
                "weekend": {
                    "summary": "\u00d72 at the weekend for Silber and Gold",
                    "value": EXAMPLE_WEEKEND,
                },
                "best_before": {
                    "summary": "+50 on each line near its best-before date",
                    "value": EXAMPLE_BEST_BEFORE,
                },
                "offer": {
                    "summary": "An offer: 200 points to Gold members, with a message",
                    "value": EXAMPLE_OFFER,
                },
            },
        ),
    ],
    db: DB,
    key: Admin,
) -> CampaignOut:
    """Save a new campaign as a **draft**, with the earning rule it manages (also a
    draft): nothing happens until it is activated."""
    payload = dict(data)
    programme_ref = payload.pop("programme", None)
    if not isinstance(programme_ref, str) or not programme_ref:
        raise Invalid("name the programme", errors=[{"field": "programme", "message": "required"}])
    spec = _spec(payload)
    with db.unit_of_work() as session:
        found = programmes.get(session, programme_ref)
        campaign = campaigns.create(session, programme=found, spec=spec, actor=key.actor)
        return _out(session, campaign, found, 0)


@router.get("/{campaign_id}", response_model=CampaignOut, responses=NOT_FOUND)
def get_campaign(campaign_id: str, db: DB, _key: CampaignsRead) -> CampaignOut:
    with db.unit_of_work(write=False) as session:
        return _with(session, campaigns.get(session, campaign_id))


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses={
        **NOT_FOUND,
        **INVALID,
        409: {
            "model": Problem,
            "description": "campaign_locked: holdout or code of an activated campaign; "
            "campaign_status: the campaign has ended; campaign_exists: code taken",
        },
    },
)
def patch_campaign(
    campaign_id: str,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="Fields to replace (`null` clears an optional one)",
            openapi_examples={
                "budget": {"summary": "A larger budget", "value": {"budget_points": 500000}}
            },
        ),
    ],
    db: DB,
    key: Admin,
) -> CampaignOut:
    """Change a campaign: the fields you send replace the current ones. An active
    campaign's rule is published again at once. Once activated, `holdout_percent` and
    `code` cannot change (**409** `campaign_locked`)."""
    with db.unit_of_work() as session:
        campaign = campaigns.get(session, campaign_id)
        spec = _spec({**campaign.spec, **changes})
        campaign = campaigns.update(session, campaign, spec=spec, actor=key.actor)
        return _with(session, campaign)


@router.post(
    "/{campaign_id}/activate",
    response_model=CampaignOut,
    responses={
        **NOT_FOUND,
        **STATUS,
        422: {
            "model": Problem,
            "description": "The window has ended (campaign_window_over), a tier is gone",
        },
    },
)
def activate_campaign(campaign_id: str, db: DB, key: Admin) -> CampaignOut:
    """Start the campaign (or resume a paused one): its rule is published, at once in
    this server process and within 5 seconds in the others. An **offer** inside its
    window is given to its audience before the answer (a page of 1,000 members at a
    time, each committed on its own; one that starts later is given by the worker)."""
    with db.unit_of_work() as session:
        campaign = campaigns.activate(session, campaigns.get(session, campaign_id), actor=key.actor)
        given = campaign.id if campaigns.spec_of(campaign).is_offer else None
        answer = _with(session, campaign)
    if given is None:
        return answer
    offers.give(db, given)
    with db.unit_of_work(write=False) as session:
        return _with(session, campaigns.get(session, given))


@router.post("/{campaign_id}/pause", response_model=CampaignOut, responses={**NOT_FOUND, **STATUS})
def pause_campaign(campaign_id: str, db: DB, key: Admin) -> CampaignOut:
    """Stop boosting until activated again; exposures and points stay."""
    with db.unit_of_work() as session:
        campaign = campaigns.pause(session, campaigns.get(session, campaign_id), actor=key.actor)
        return _with(session, campaign)


@router.post("/{campaign_id}/end", response_model=CampaignOut, responses=NOT_FOUND)
def end_campaign(campaign_id: str, db: DB, key: Admin) -> CampaignOut:
    """Close the campaign for good; its points, exposures and statistics stay."""
    with db.unit_of_work() as session:
        campaign = campaigns.end(session, campaigns.get(session, campaign_id), actor=key.actor)
        return _with(session, campaign)


@router.get("/{campaign_id}/stats", response_model=CampaignStats, responses=NOT_FOUND)
def stats(campaign_id: str, db: DB, _key: Admin) -> CampaignStats:
    """Audience, treated and held out, messages, points issued and budget left,
    redemptions, and purchases and revenue per member of each arm over the window."""
    with db.unit_of_work(write=False) as session:
        return campaign_stats(session, campaigns.get(session, campaign_id), now=utc_now())
