"""Journeys in the console: the eight kinds of a programme with their settings, whether
each runs, and how many members each step reached (treated, that is messaged, and held
out), as ``GET /v1/programmes/{slug}/journeys`` answers; settings and the switch are
``PUT /v1/programmes/{slug}/journeys/{kind}`` (``journeys.put``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from treu.errors import TreuError
from treu.journeys.models import Arm, Journey, JourneyKind
from treu.journeys.service import DEFAULT_PARAMS, MARKETING, journeys
from treu.kit.text import N_
from treu.messaging.keys import message_keys
from treu.programmes.models import Programme
from treu.rewards.catalogue import catalogue
from treu.rewards.models import COUPON_TYPES, RewardType
from treu.web.admin import router
from treu.web.admin.campaigns import choose_programme
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import render
from treu.web.security import check_csrf

ADMIN.link("/admin/journeys", N_("Journeys"), order=80, permission="campaigns.read")

KIND_NAMES = {
    JourneyKind.welcome: N_("Welcome"),
    JourneyKind.first_purchase: N_("First purchase"),
    JourneyKind.birthday: N_("Birthday"),
    JourneyKind.inactivity: N_("Inactivity"),
    JourneyKind.points_expiring: N_("Points expiring"),
    JourneyKind.tier_upgrade: N_("Tier upgrade"),
    JourneyKind.tier_at_risk: N_("Tier at risk"),
    JourneyKind.thank_you: N_("Thank you"),
}
PARAM_NAMES = {
    "days_before": N_("Days before"),
    "inactive_days": N_("Days without a purchase"),
    "second_step_days": N_("Days until the second message"),
    "top_percent": N_("Top share of members in per cent"),
}


class JourneyForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    csrf: str = Field(default="", max_length=100)
    enabled: str = Field(default="", max_length=5)
    template: str = Field(default="", max_length=64)
    reward_id: str = Field(default="", max_length=40)
    holdout_pct: str = Field(default="0", max_length=10)
    days_before: str = Field(default="", max_length=10)
    inactive_days: str = Field(default="", max_length=10)
    second_step_days: str = Field(default="", max_length=10)
    top_percent: str = Field(default="", max_length=10)

    def number(self, name: str) -> int | None:
        """A whole number field (``None`` when empty); ``ValueError`` when not one."""
        text = str(getattr(self, name)).strip()
        return int(text) if text else None


def _page(
    request: Request,
    staff: Staff,
    slug: str,
    *,
    error: tuple[str, str] | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        all_programmes, chosen = choose_programme(session, slug)
        rows = []
        rewards = []
        quiet = ("21:00", "08:00")
        if chosen is not None:
            quiet = journeys.quiet_hours(session, chosen.id)
            rewards = [
                r
                for r in catalogue.all(session, programme=chosen)
                if RewardType(r.type) in COUPON_TYPES
            ]
            for journey in journeys.all(session, chosen.id):
                steps = journeys.stats(session, journey.id) if journey.id is not None else {}
                rows.append((journey, _counts(steps), JourneyKind(journey.kind) in MARKETING))
    return render(
        request,
        "admin/journeys.html",
        status_code=status_code,
        timezone=chosen.timezone if chosen is not None else "UTC",
        staff=staff,
        programmes=all_programmes,
        chosen=chosen,
        rows=rows,
        rewards=rewards,
        quiet=quiet,
        kind_names=KIND_NAMES,
        param_names=PARAM_NAMES,
        message_keys=sorted(message_keys()),
        error=error,
        done=done,
    )


def _counts(steps: dict[int, dict[str, int]]) -> list[tuple[int, int, int]]:
    """Per step: entered (both arms), messaged (treated), held out."""
    return [
        (
            step,
            arms.get(Arm.treated.value, 0) + arms.get(Arm.held_out.value, 0),
            arms.get(Arm.treated.value, 0),
        )
        for step, arms in sorted(steps.items())
    ]


@router.get("/journeys")
def journeys_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    return _page(request, staff, programme, done=request.query_params.get("done"))


def _programme(request: Request, slug: str) -> Programme | None:
    with database(request).unit_of_work(write=False) as session:
        return choose_programme(session, slug)[1]


def _save(
    request: Request,
    staff: Staff,
    programme: Programme,
    kind: JourneyKind,
    *,
    enabled: bool,
    form: JourneyForm | None,
) -> Response:
    try:
        with database(request).unit_of_work() as session:
            current: Journey | None = journeys.get(session, programme.id, kind)
            if form is None:  # the switch: the settings stay
                row = current or journeys.default(programme.id, kind)
                journeys.put(
                    session,
                    programme,
                    kind,
                    enabled=enabled,
                    template=row.template,
                    params=dict(row.params),
                    reward_id=row.reward_id,
                    holdout_pct=row.holdout_pct,
                )
            else:
                params = {
                    name: value
                    for name in DEFAULT_PARAMS[kind]
                    if (value := form.number(name)) is not None
                }
                holdout = form.number("holdout_pct") or 0
                if not 0 <= holdout <= 100:
                    raise ValueError(holdout)
                reward = uuid.UUID(form.reward_id) if form.reward_id.strip() else None
                journeys.put(
                    session,
                    programme,
                    kind,
                    enabled=enabled,
                    template=form.template.strip() or None,
                    params=params,
                    reward_id=reward,
                    holdout_pct=holdout,
                )
    except TreuError as error:
        return _page(
            request, staff, programme.slug, error=(kind.value, error.detail), status_code=422
        )
    except ValueError:
        return _page(request, staff, programme.slug, error=(kind.value, "numbers"), status_code=422)
    return RedirectResponse(
        f"/admin/journeys?programme={programme.slug}&done={kind.value}#journey-{kind.value}",
        status_code=303,
    )


@router.post("/journeys/{kind}")
def save_journey(
    request: Request,
    kind: JourneyKind,
    staff: Annotated[Staff, Depends(need("journeys.write"))],
    form: Annotated[JourneyForm, Form()],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    check_csrf(form.csrf, staff.csrf)
    chosen = _programme(request, programme)
    if chosen is None:
        return RedirectResponse("/admin/journeys", status_code=303)
    if form.template and form.template not in message_keys():
        return _page(request, staff, chosen.slug, error=(kind.value, "template"), status_code=422)
    return _save(request, staff, chosen, kind, enabled=bool(form.enabled), form=form)


@router.post("/journeys/{kind}/switch")
def switch_journey(
    request: Request,
    kind: JourneyKind,
    staff: Annotated[Staff, Depends(need("journeys.write"))],
    csrf: Annotated[str, Form(max_length=100)] = "",
    enabled: Annotated[str, Form(max_length=5)] = "",
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    check_csrf(csrf, staff.csrf)
    chosen = _programme(request, programme)
    if chosen is None:
        return RedirectResponse("/admin/journeys", status_code=303)
    return _save(request, staff, chosen, kind, enabled=enabled == "on", form=None)
