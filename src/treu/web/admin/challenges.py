"""Challenges in the console: the list with each challenge's status, period,
participants and completions; creating and editing one with every field the API takes
(an expression's error shown at its field with its line and column, as the API reports
it); activating, pausing and ending as the service allows.

What counts is frozen at the first activation (``treu.challenges.service``): the form
of an activated challenge offers only the name, the description and the reward, and
sends those as the API's PATCH does. The list is four queries whatever its length (the
programmes, the challenges, participants and completions each grouped by challenge).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from treu.challenges.models import Challenge, ChallengeStatus
from treu.challenges.service import challenges, parse_spec
from treu.challenges.spec import ChallengeSpec
from treu.errors import TreuError
from treu.kit.text import N_
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.event_types import event_types
from treu.web.admin import router
from treu.web.admin.catalogue_flow import (
    Translate,
    change_or_list,
    checked_form,
    field_errors,
    programme_choice,
    programme_or_first,
    save_or_redisplay,
)
from treu.web.admin.catalogue_forms import (
    GENERAL,
    Errors,
    Values,
    field_name,
    int_text,
    local_text,
    local_time,
    message_of,
    whole,
)
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for

ADMIN.link("/admin/challenges", N_("Challenges"), order=60, permission="programme.read")

STATUSES: dict[str, str] = {
    ChallengeStatus.draft.value: N_("draft"),
    ChallengeStatus.active.value: N_("active"),
    ChallengeStatus.paused.value: N_("paused"),
    ChallengeStatus.ended.value: N_("ended"),
}
GOALS: dict[str, str] = {
    "count": N_("Count events"),
    "distinct": N_("Different values"),
    "sum": N_("Sum of a value"),
}
FIELDS = [
    "programme", "code", "name_en", "name_de", "description_en", "description_de", "trigger",
    "condition", "line_condition", "goal_type", "goal_target", "goal_value", "window_type",
    "window_every", "window_starts_at", "window_ends_at", "max_completions", "reward_points",
    "badge_code", "badge_name_en", "badge_name_de", "badge_icon", "badge_description_en",
    "badge_description_de",
]  # fmt: skip
EDITABLE_WHEN_LOCKED = ("name", "description", "reward")
LOCKED_FORM_FIELDS = tuple(
    f for f in FIELDS if f.startswith(("name_", "description_", "reward_", "badge_"))
)
"""The form fields of what may change once a challenge is active (its form sends only
these)."""
ACTIONS = {
    "activate": (challenges.activate, N_("The challenge is active: it counts events now.")),
    "pause": (challenges.pause, N_("The challenge is paused; progress made so far is kept.")),
    "end": (challenges.end, N_("The challenge has ended; members keep what they completed.")),
}


def _name(text: dict[str, Any] | None, lang: str) -> str:
    text = text or {}
    return str(text.get(lang) or text.get("en") or "")


@dataclass(frozen=True)
class Row:
    challenge: Challenge
    name: str
    period: str
    participants: int
    completions: int
    points: int
    badge: dict[str, Any] | None


def _period(spec: dict[str, Any], _: Any, day: Any) -> str:
    window = spec["window"]
    starts, ends = window.get("starts_at"), window.get("ends_at")
    span = ""
    if starts or ends:
        span = f"{day(starts) if starts else '…'} – {day(ends) if ends else '…'}"  # noqa: RUF001
    if window["type"] == "fixed":
        return span
    every = _("every week") if window["every"] == "week" else _("every month")
    return f"{every} ({span})" if span else every


# --- the list ------------------------------------------------------------------------------


def _list(
    request: Request,
    staff: Staff,
    slug: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    from babel.dates import format_date

    lang = language(request)
    _ = translate_for(lang)
    with database(request).unit_of_work(write=False) as session:
        every, chosen = programme_choice(session, slug)
        rows: list[Row] = []
        if chosen is not None:
            items = challenges.all(session, programme_id=chosen.id)
            ids = [c.id for c in items]
            people = challenges.participant_counts(session, ids)
            completed = challenges.completion_counts(session, ids)
            locale = "de_DE" if lang == "de" else "en_GB"

            def day(value: str) -> str:
                from datetime import datetime
                from zoneinfo import ZoneInfo

                at = datetime.fromisoformat(value).astimezone(ZoneInfo(chosen.timezone))
                return format_date(at.date(), "medium", locale=locale)

            for item in items:
                spec = item.spec
                rows.append(
                    Row(
                        item,
                        _name(spec.get("name"), lang),
                        _period(spec, _, day),
                        people.get(item.id, 0),
                        completed.get(item.id, 0),
                        int(spec["reward"].get("points") or 0),
                        spec["reward"].get("badge"),
                    )
                )
        return render(
            request,
            "admin/challenges.html",
            status_code=status_code,
            timezone=chosen.timezone if chosen else "UTC",
            staff=staff,
            programmes=every,
            programme=chosen,
            rows=rows,
            statuses=STATUSES,
            error=error,
            done=done,
            done_text=ACTIONS[done][1] if done in ACTIONS else None,
        )


@router.get("/challenges")
def challenges_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    return _list(request, staff, programme, done=done or None)


# --- the form ------------------------------------------------------------------------------


def _values_of(challenge: Challenge, programme: Programme) -> Values:
    spec, tz = challenge.spec, programme.timezone
    name, description = spec.get("name") or {}, spec.get("description") or {}
    goal, window, reward = spec["goal"], spec["window"], spec["reward"]
    badge = reward.get("badge") or {}
    badge_name, badge_description = badge.get("name") or {}, badge.get("description") or {}
    return {
        "programme": programme.slug,
        "code": challenge.code,
        "name_en": name.get("en") or "",
        "name_de": name.get("de") or "",
        "description_en": description.get("en") or "",
        "description_de": description.get("de") or "",
        "trigger": ", ".join(spec.get("trigger") or []),
        "condition": spec.get("condition") or "",
        "line_condition": spec.get("line_condition") or "",
        "goal_type": goal["type"],
        "goal_target": str(goal["target"]),
        "goal_value": goal.get("value") or "",
        "window_type": window["type"],
        "window_every": window.get("every") or "month",
        "window_starts_at": local_text(window.get("starts_at"), tz),
        "window_ends_at": local_text(window.get("ends_at"), tz),
        "max_completions": int_text(spec.get("max_completions")),
        "reward_points": str(reward.get("points") or ""),
        "badge_code": badge.get("code") or "",
        "badge_name_en": badge_name.get("en") or "",
        "badge_name_de": badge_name.get("de") or "",
        "badge_icon": badge.get("icon") or "",
        "badge_description_en": badge_description.get("en") or "",
        "badge_description_de": badge_description.get("de") or "",
    }  # fmt: skip


def _blank(programme: Programme) -> Values:
    values: Values = dict.fromkeys(FIELDS, "")
    values.update(
        programme=programme.slug,
        trigger="purchase",
        goal_type="count",
        window_type="fixed",
        window_every="month",
        max_completions="1",
    )
    return values


def _local(values: Values, prefix: str) -> dict[str, str] | None:
    out = {lang: values[f"{prefix}_{lang}"] for lang in ("en", "de") if values[f"{prefix}_{lang}"]}
    return out or None


def _document(values: Values, programme: Programme) -> dict[str, Any]:
    """The form as a challenge specification, as an API client would send it."""
    tz = programme.timezone
    goal: dict[str, Any] = {"type": values["goal_type"], "target": whole(values, "goal_target")}
    if values["goal_value"]:
        goal["value"] = values["goal_value"]
    window: dict[str, Any] = {"type": values["window_type"]}
    if values["window_type"] == "repeating":
        window["every"] = values["window_every"]
    for key in ("starts_at", "ends_at"):
        at = local_time(values, f"window_{key}", tz)
        if at is not None:
            window[key] = at
    reward: dict[str, Any] = {"points": whole(values, "reward_points") or 0}
    badge_fields = ("badge_code", "badge_name_en", "badge_name_de", "badge_icon")
    if any(values[k] for k in badge_fields):
        badge: dict[str, Any] = {
            "code": values["badge_code"],
            "name": _local(values, "badge_name") or {},
            "icon": values["badge_icon"],
        }
        if _local(values, "badge_description"):
            badge["description"] = _local(values, "badge_description")
        reward["badge"] = badge
    triggers = [t.strip() for t in values["trigger"].replace(";", ",").split(",") if t.strip()]
    return {
        "code": values["code"],
        "name": _local(values, "name") or {},
        "description": _local(values, "description"),
        "trigger": triggers,
        "condition": values["condition"] or None,
        "line_condition": values["line_condition"] or None,
        "goal": goal,
        "window": window,
        "max_completions": whole(values, "max_completions"),
        "reward": reward,
    }


FIELD_OF = {
    "name": "name_en",
    "description": "description_en",
    "reward": "reward_points",
    "reward.points": "reward_points",
    "reward.badge": "badge_code",
    "reward.badge.name": "badge_name_en",
    "reward.badge.description": "badge_description_en",
    "window": "window_starts_at",
    "trigger": "trigger",
}


def _field(where: str) -> str:
    """An error's ``field`` in the API (``goal.value``, ``reward.badge.name.en``,
    ``window.fixed.ends_at``) as the form field showing it."""
    parts = [
        p for p in where.split(".") if p not in ("fixed", "repeating", "count", "sum", "distinct")
    ]
    if parts and parts[0] == "trigger":
        return "trigger"
    dotted = ".".join(parts)
    if dotted in FIELD_OF:
        return FIELD_OF[dotted]
    name = field_name(dotted)
    name = name.replace("reward_badge_", "badge_")
    return name if name in FIELDS else GENERAL


def _errors(error: Exception, _: Translate) -> Errors:
    """Where the form shows ``error``; an expression's errors, which the service lists
    all at once, each at its field with its line and column."""
    listed = error.extra.get("errors") if isinstance(error, TreuError) else None
    if not (isinstance(listed, list) and listed):
        return field_errors(error, _, field_of=_field)
    assert isinstance(error, TreuError)
    out: Errors = {}
    for item in listed:
        message = message_of(
            {"type": item.get("type"), "msg": item.get("message", ""), "ctx": item.get("ctx")}, _
        )
        if item.get("line") is not None and "(line " not in message:
            message += f" (line {item['line']}, column {item.get('column')})"
        out.setdefault(_field(str(item.get("field") or "")), message)
    out.setdefault(GENERAL, error.detail)
    return out


def _form(
    request: Request,
    staff: Staff,
    session: Session,
    programme: Programme,
    values: Values,
    *,
    challenge: Challenge | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
    done: str | None = None,
) -> Response:
    lang = language(request)
    _ = translate_for(lang)
    if challenge is not None:
        title = _("Edit challenge") + ": " + _name(challenge.spec.get("name"), lang)
    else:
        title = _("New challenge")
    return render(
        request,
        "admin/challenges_form.html",
        status_code=status_code,
        timezone=programme.timezone,
        staff=staff,
        programme=programme,
        challenge=challenge,
        locked=challenge is not None and challenge.activated_at is not None,
        ended=challenge is not None and challenge.status == ChallengeStatus.ended.value,
        values=values,
        errors=errors or {},
        statuses=STATUSES,
        goals=GOALS,
        types=[t.name for t in event_types.list(session, programme.id, lang=lang)],
        title=title,
        done=done,
    )


@router.get("/challenges/new")
def new_challenge_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("challenges.write"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        found = programme_or_first(session, programme)
        if found is None:
            return RedirectResponse("/admin/challenges", status_code=303)
        return _form(request, staff, session, found, _blank(found))


@router.post("/challenges/new")
async def create_challenge(
    request: Request, staff: Annotated[Staff, Depends(need("challenges.write"))]
) -> Response:
    values = await checked_form(request, staff, FIELDS)
    return await run_in_threadpool(_create, request, staff, values)


def _create(request: Request, staff: Staff, values: Values) -> Response:
    def write(session: Session) -> str:
        found = programmes.get(session, values["programme"])
        spec = parse_spec(_document(values, found))
        created = challenges.create(
            session, programme=found, spec=spec, actor=f"staff:{staff.email}"
        )
        return f"/admin/challenges/{created.id}?done=created"

    def redisplay(session: Session, errors: Errors) -> Response:
        found = programmes.get(session, values["programme"])
        return _form(request, staff, session, found, values, errors=errors, status_code=422)

    return save_or_redisplay(request, write=write, redisplay=redisplay, errors=_errors)


def _owned(session: Session, challenge_id: uuid.UUID) -> tuple[Challenge, Programme]:
    challenge = challenges.get(session, challenge_id)
    return challenge, programmes.get(session, challenge.programme_id)


@router.get("/challenges/{challenge_id}")
def challenge_page(
    request: Request,
    challenge_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        challenge, found = _owned(session, challenge_id)
        return _form(
            request, staff, session, found, _values_of(challenge, found), challenge=challenge,
            done=done or None,
        )  # fmt: skip


@router.post("/challenges/{challenge_id}")
async def update_challenge(
    request: Request,
    challenge_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("challenges.write"))],
) -> Response:
    values = await checked_form(request, staff, FIELDS)
    return await run_in_threadpool(_update, request, staff, challenge_id, values)


def _update(request: Request, staff: Staff, challenge_id: uuid.UUID, values: Values) -> Response:
    def write(session: Session) -> str:
        challenge, found = _owned(session, challenge_id)
        document = _document(values | {"code": values["code"] or challenge.code}, found)
        if challenge.activated_at is not None:
            # What counts is frozen: send what may change, as the API's PATCH does.
            document = {
                **challenge.spec,
                **{k: document[k] for k in EDITABLE_WHEN_LOCKED},
            }
        spec: ChallengeSpec = parse_spec(document)
        challenges.update(session, challenge, spec=spec, actor=f"staff:{staff.email}")
        return f"/admin/challenges/{challenge_id}?done=saved"

    def redisplay(session: Session, errors: Errors) -> Response:
        challenge, found = _owned(session, challenge_id)
        shown = values
        if challenge.activated_at is not None:  # the rest was not sent: as stored
            typed = {k: values[k] for k in LOCKED_FORM_FIELDS}
            shown = _values_of(challenge, found) | typed
        return _form(
            request, staff, session, found, shown, challenge=challenge, errors=errors,
            status_code=422,
        )  # fmt: skip

    return save_or_redisplay(request, write=write, redisplay=redisplay, errors=_errors)


@router.post("/challenges/{challenge_id}/{action}")
async def change_status(
    request: Request,
    challenge_id: uuid.UUID,
    action: str,
    staff: Annotated[Staff, Depends(need("challenges.write"))],
) -> Response:
    await checked_form(request, staff, [])
    return await run_in_threadpool(_change_status, request, staff, challenge_id, action)


def _change_status(
    request: Request, staff: Staff, challenge_id: uuid.UUID, action: str
) -> Response:
    if action not in ACTIONS:
        from treu.errors import NotFound

        raise NotFound(f"no action {action!r}")
    return change_or_list(
        request,
        owned=lambda session: _owned(session, challenge_id),
        change=lambda session, challenge, _found: ACTIONS[action][0](
            session, challenge, actor=f"staff:{staff.email}"
        ),
        listed=lambda slug, error: _list(request, staff, slug, status_code=422, error=error),
        page="/admin/challenges",
        done=action,
    )
