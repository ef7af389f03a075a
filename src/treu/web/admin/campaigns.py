"""Campaigns in the console: the programme's bonus campaigns and targeted offers, a form
that writes what ``POST /v1/campaigns`` takes (errors shown at their field, expressions
with line and column), activate / pause / end as the service allows, and a campaign's
results from its statistics (``treu.campaigns.stats``) with the uplift over the control
group (``treu.insights.dashboard.uplift``).

The form is turned into the API's specification here (local date and time in the
programme's time zone, empty fields left out) and checked by the same ``parse_spec``;
everything the campaign may or may not do is the service's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from treu.campaigns.models import Campaign, CampaignStatus
from treu.campaigns.offers import offers
from treu.campaigns.schemas import OFFER_TEMPLATE, CampaignSpec
from treu.campaigns.service import campaigns, parse_spec
from treu.campaigns.stats import campaign_stats
from treu.errors import Invalid, TreuError
from treu.insights.dashboard import uplift
from treu.kit.money import format_money
from treu.kit.text import N_
from treu.kit.time import utc_now
from treu.messaging.keys import message_keys
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.catalogue import catalogue
from treu.rewards.models import COUPON_TYPES, RewardType
from treu.tiers.service import tiers
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.charts import Series, bar_chart
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for
from treu.web.security import check_csrf

ADMIN.link("/admin/campaigns", N_("Campaigns"), order=70, permission="campaigns.read")

LOCAL = "%Y-%m-%dT%H:%M"
"""The value of an ``<input type="datetime-local">``."""


def choose_programme(session: Session, slug: str) -> tuple[list[Programme], Programme | None]:
    """The programmes, and the one named by ``slug`` (else the first): the programme
    picker of the campaign, journey and template pages."""
    found = programmes.all(session)
    chosen = next((p for p in found if p.slug == slug), None)
    return found, chosen or (found[0] if found else None)


class CampaignForm(BaseModel):
    """The campaign form as sent: text fields, turned into a specification by ``spec``."""

    model_config = ConfigDict(extra="ignore")

    csrf: str = Field(default="", max_length=100)
    kind: str = Field(default="bonus", max_length=10)
    code: str = Field(default="", max_length=100)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2_000)
    starts_at: str = Field(default="", max_length=40)
    ends_at: str = Field(default="", max_length=40)
    boost_type: str = Field(default="multiplier", max_length=20)
    factor: str = Field(default="", max_length=20)
    boost_points: str = Field(default="", max_length=20)
    condition: str = Field(default="", max_length=1_100)
    line_condition: str = Field(default="", max_length=1_100)
    offer_points: str = Field(default="", max_length=20)
    offer_reward: str = Field(default="", max_length=40)
    offer_template: str = Field(default=OFFER_TEMPLATE, max_length=64)
    tiers: list[str] = Field(default_factory=list, max_length=20)
    members: str = Field(default="", max_length=400_000)
    holdout_percent: str = Field(default="10", max_length=10)
    budget_points: str = Field(default="", max_length=20)

    def spec(self, timezone: str) -> dict[str, Any]:
        """The API's specification (``POST /v1/campaigns`` without ``programme``)."""
        zone = ZoneInfo(timezone)
        data: dict[str, Any] = {
            "kind": self.kind,
            "code": self.code.strip(),
            "name": self.name,
            "window": {
                "starts_at": _instant(self.starts_at, zone),
                "ends_at": _instant(self.ends_at, zone),
            },
            "holdout_percent": self.holdout_percent.strip() or 0,
        }
        if self.description.strip():
            data["description"] = self.description.strip()
        if self.budget_points.strip():
            data["budget_points"] = self.budget_points.strip()
        audience: dict[str, Any] = {}
        if self.tiers:
            audience["tiers"] = self.tiers
        listed = self.members.replace(",", " ").split()
        if listed:
            audience["members"] = listed
        data["audience"] = audience
        if self.kind == "offer":
            offer: dict[str, Any] = {"template": self.offer_template or OFFER_TEMPLATE}
            if self.offer_points.strip():
                offer["points"] = self.offer_points.strip()
            if self.offer_reward.strip():
                offer["reward_id"] = self.offer_reward.strip()
            data["offer"] = offer
        else:
            boost: dict[str, Any] = {"type": self.boost_type}
            if self.boost_type == "points":
                boost["points"] = self.boost_points.strip()
            else:
                boost["factor"] = self.factor.strip()
            if self.condition.strip():
                boost["condition"] = self.condition
            if self.line_condition.strip():
                boost["line_condition"] = self.line_condition
            data["boost"] = boost
        return data

    @classmethod
    def of(cls, spec: dict[str, Any], timezone: str) -> CampaignForm:
        """The form filled with a stored specification."""
        zone = ZoneInfo(timezone)
        boost = spec.get("boost") or {}
        offer = spec.get("offer") or {}
        audience = spec.get("audience") or {}
        window = spec.get("window") or {}

        def local(value: str | None) -> str:
            if not value:
                return ""
            return datetime.fromisoformat(value).astimezone(zone).strftime(LOCAL)

        def text(value: Any) -> str:
            return "" if value is None else str(value)

        return cls(
            kind=spec.get("kind", "bonus"),
            code=spec.get("code", ""),
            name=spec.get("name", ""),
            description=text(spec.get("description")),
            starts_at=local(window.get("starts_at")),
            ends_at=local(window.get("ends_at")),
            boost_type=boost.get("type", "multiplier"),
            factor=text(boost.get("factor")),
            boost_points=text(boost.get("points")),
            condition=text(boost.get("condition")),
            line_condition=text(boost.get("line_condition")),
            offer_points=text(offer.get("points")),
            offer_reward=text(offer.get("reward_id")),
            offer_template=offer.get("template", OFFER_TEMPLATE),
            tiers=list(audience.get("tiers") or []),
            members="\n".join(audience.get("members") or []),
            holdout_percent=text(spec.get("holdout_percent", 10)),
            budget_points=text(spec.get("budget_points")),
        )


def _instant(value: str, zone: ZoneInfo) -> str:
    """A local date and time as an instant in the programme's zone; anything else is
    passed on for the specification to refuse at its field."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.isoformat()


FIELDS = {
    "code": "code",
    "name": "name",
    "description": "description",
    "window.starts_at": "starts_at",
    "window.ends_at": "ends_at",
    "window": "ends_at",
    "holdout_percent": "holdout_percent",
    "budget_points": "budget_points",
    "audience.tiers": "tiers",
    "audience.members": "members",
    "offer.points": "offer_points",
    "offer.reward_id": "offer_reward",
    "offer.template": "offer_template",
    "offer": "offer_points",
    "boost.condition": "condition",
    "boost.line_condition": "line_condition",
    "boost.factor": "factor",
    "boost.points": "boost_points",
    "boost": "factor",
    "kind": "kind",
}


def field_errors(error: TreuError) -> dict[str, str]:
    """The error's messages by form field (``""``: about the whole form)."""
    found: dict[str, str] = {}
    for item in error.extra.get("errors") or []:
        parts = [p for p in str(item.get("field") or "").split(".") if p]
        if parts[:1] == ["boost"] and len(parts) > 2 and parts[1] in ("multiplier", "points"):
            parts = ["boost", *parts[2:]]  # the union's member: boost.multiplier.factor
        key = ".".join(parts[:2])
        field = FIELDS.get(key) or FIELDS.get(parts[0] if parts else "", "")
        message = str(item.get("message") or "")
        if item.get("line") is not None:
            message = f"line {item['line']}, column {item.get('column')}: {message}"
        found[field] = f"{found[field]}; {message}" if field in found else message
    if not found:
        found[""] = error.detail
    return found


def _options(session: Session, programme: Programme) -> dict[str, Any]:
    """What the form offers: the programme's tiers, its coupon rewards, the messages."""
    ladder = tiers.ladder(session, programme)
    rewards = [
        r for r in catalogue.all(session, programme=programme) if RewardType(r.type) in COUPON_TYPES
    ]
    return {
        "tier_codes": [(t.code, t.name) for t in ladder.tiers],
        "rewards": rewards,
        "message_keys": sorted(message_keys()),
    }


def _form_page(
    request: Request,
    staff: Staff,
    programme: Programme,
    form: CampaignForm,
    *,
    campaign: Campaign | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        options = _options(session, programme)
    return render(
        request,
        "admin/campaign_form.html",
        status_code=status_code,
        timezone=programme.timezone,
        staff=staff,
        programme=programme,
        campaign=campaign,
        form=form,
        errors=errors or {},
        **options,
    )


def _spec(form: CampaignForm, timezone: str) -> CampaignSpec:
    spec = parse_spec(form.spec(timezone))
    if spec.offer is not None and spec.offer.template not in message_keys():
        raise Invalid(
            f"no message template {spec.offer.template!r}",
            errors=[{"field": "offer.template", "message": "no such message"}],
        )
    return spec


@router.get("/campaigns")
def campaigns_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    now = utc_now()
    with database(request).unit_of_work(write=False) as session:
        all_programmes, chosen = choose_programme(session, programme)
        rows = []
        if chosen is not None:
            found = campaigns.all(session, programme_id=chosen.id)
            used = campaigns.budgets_used(session, found)
            for c in reversed(found):
                spec = campaigns.spec_of(c)
                rows.append(
                    (
                        c,
                        spec,
                        used.get(c.id, 0),
                        campaigns.running(c, budget_used=used.get(c.id, 0), now=now),
                    )
                )
    return render(
        request,
        "admin/campaigns.html",
        timezone=chosen.timezone if chosen is not None else "UTC",
        staff=staff,
        programmes=all_programmes,
        chosen=chosen,
        rows=rows,
    )


@router.get("/campaigns/new")
def new_campaign(
    request: Request,
    staff: Annotated[Staff, Depends(need("campaigns.write"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        _, chosen = choose_programme(session, programme)
    if chosen is None:
        return RedirectResponse("/admin/campaigns", status_code=303)
    return _form_page(request, staff, chosen, CampaignForm())


@router.post("/campaigns/new")
def create_campaign(
    request: Request,
    staff: Annotated[Staff, Depends(need("campaigns.write"))],
    form: Annotated[CampaignForm, Form()],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    check_csrf(form.csrf, staff.csrf)
    with database(request).unit_of_work(write=False) as session:
        _, chosen = choose_programme(session, programme)
    if chosen is None:
        return RedirectResponse("/admin/campaigns", status_code=303)
    try:
        spec = _spec(form, chosen.timezone)
        with database(request).unit_of_work() as session:
            created = campaigns.create(
                session,
                programme=programmes.get(session, chosen.id),
                spec=spec,
                actor=f"staff:{staff.email}",
            )
            campaign_id = created.id
    except TreuError as error:
        return _form_page(request, staff, chosen, form, errors=field_errors(error), status_code=422)
    return RedirectResponse(f"/admin/campaigns/{campaign_id}?done=created", status_code=303)


def _campaign_page(
    request: Request,
    staff: Staff,
    campaign_id: uuid.UUID,
    *,
    error: str | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    _ = translate_for(lang)
    now = utc_now()
    with database(request).unit_of_work(write=False) as session:
        campaign = campaigns.get(session, campaign_id)
        programme = programmes.get(session, campaign.programme_id)
        spec = campaigns.spec_of(campaign)
        stats = campaign_stats(session, campaign, now=now)
        used = campaigns.budgets_used(session, [campaign]).get(campaign.id, 0)
        running = campaigns.running(campaign, budget_used=used, now=now)
        tier_names = {t.code: t.name for t in tiers.ladder(session, programme).tiers}
    treated, control = stats.arms["treated"], stats.arms["held_out"]

    def money(minor: int) -> str:
        return format_money(minor, programme.currency, lang)

    chart = bar_chart(
        _("Revenue per member"),
        [_("Revenue per member")],
        [
            Series(_("treated"), [treated.revenue_per_member_minor]),
            Series(_("control group"), [control.revenue_per_member_minor]),
        ],
        number=money,
        height=180,
    )
    return render(
        request,
        "admin/campaign.html",
        status_code=status_code,
        timezone=programme.timezone,
        staff=staff,
        campaign=campaign,
        programme=programme,
        spec=spec,
        stats=stats,
        uplift=uplift(stats),
        running=running,
        tier_names=tier_names,
        chart=chart,
        money=money,
        error=error,
        done=done,
    )


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request,
    campaign_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
) -> Response:
    return _campaign_page(request, staff, campaign_id, done=request.query_params.get("done"))


@router.get("/campaigns/{campaign_id}/edit")
def edit_campaign(
    request: Request,
    campaign_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("campaigns.write"))],
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        campaign = campaigns.get(session, campaign_id)
        programme = programmes.get(session, campaign.programme_id)
        session.expunge(campaign)
    return _form_page(
        request,
        staff,
        programme,
        CampaignForm.of(campaign.spec, programme.timezone),
        campaign=campaign,
    )


@router.post("/campaigns/{campaign_id}/edit")
def save_campaign(
    request: Request,
    campaign_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("campaigns.write"))],
    form: Annotated[CampaignForm, Form()],
) -> Response:
    check_csrf(form.csrf, staff.csrf)
    with database(request).unit_of_work(write=False) as session:
        campaign = campaigns.get(session, campaign_id)
        programme = programmes.get(session, campaign.programme_id)
        session.expunge(campaign)
    try:
        spec = _spec(form, programme.timezone)
        with database(request).unit_of_work() as session:
            campaigns.update(
                session,
                campaigns.get(session, campaign_id),
                spec=spec,
                actor=f"staff:{staff.email}",
            )
    except TreuError as error:
        return _form_page(
            request,
            staff,
            programme,
            form,
            campaign=campaign,
            errors=field_errors(error),
            status_code=422,
        )
    return RedirectResponse(f"/admin/campaigns/{campaign_id}?done=saved", status_code=303)


ACTIONS = {
    "activate": campaigns.activate,
    "pause": campaigns.pause,
    "end": campaigns.end,
}


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(
    request: Request,
    campaign_id: uuid.UUID,
    action: str,
    staff: Annotated[Staff, Depends(need("campaigns.write"))],
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Activate, pause or end; an offer activated inside its window is given at once,
    as the API does."""
    check_csrf(csrf, staff.csrf)
    act = ACTIONS.get(action)
    if act is None:
        return _campaign_page(request, staff, campaign_id, error="unknown", status_code=404)
    db = database(request)
    try:
        with db.unit_of_work() as session:
            campaign = act(
                session, campaigns.get(session, campaign_id), actor=f"staff:{staff.email}"
            )
            give = (
                action == "activate"
                and campaigns.spec_of(campaign).is_offer
                and campaign.status == CampaignStatus.active.value
            )
    except TreuError as error:
        return _campaign_page(request, staff, campaign_id, error=error.detail, status_code=422)
    if give:
        offers.give(db, campaign_id)
    return RedirectResponse(f"/admin/campaigns/{campaign_id}?done={action}", status_code=303)
