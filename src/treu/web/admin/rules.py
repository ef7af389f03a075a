"""Earning rules in the console: the list, the editor, the simulation, publishing.

Marketing writes a rule in a form (no JSON): the fields of ``RuleSpec`` with the
conditions in the rules expression language. The form becomes the same specification
the API takes and is validated by the same model, so an expression that does not
compile is shown next to its field with the parser's message, line and column, and the
rest of the form stays as typed. Saving stores the draft (``rules.create`` /
``rules.update``, with the revision the editor saw); the simulation replays recorded
events through the saved draft (``treu.events.simulation``); publishing, pausing and
resuming are the rules service's, audited under the staff member's name.

Support and analysts read the list; every other route needs ``rules.write`` or
``rules.publish`` on the server, for GET and POST alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.campaigns.service import campaigns
from treu.errors import TreuError
from treu.events.simulation import RuleReplay, SimulationIn, simulate_in_full
from treu.kit.money import format_money, liability_minor
from treu.kit.text import N_
from treu.kit.time import local_date, utc_now
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.event_types import event_types
from treu.rules.models import Rule, RuleStatus
from treu.rules.service import rules
from treu.rules.spec import RuleSpec, expression_error_details
from treu.web.admin import router
from treu.web.admin.catalogue_forms import message_of
from treu.web.admin.context import Staff, database, need
from treu.web.charts import Series, bar_chart
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for
from treu.web.security import check_csrf

ADMIN.link("/admin/rules", N_("Rules"), order=30, permission="programme.read")

EFFECTS = ("points_per_unit", "multiplier", "fixed", "percent_bonus")
LIMIT_ROWS = 2
MAX_LIMITS = 4  # RuleSpec.limits: a draft from the API may have more rows than the blank form
DEFAULT_DAYS = 28
TEXT = 4000
SHORT = 200

Form_ = Annotated[str, Form(max_length=SHORT)]
Text_ = Annotated[str, Form(max_length=TEXT)]


# --------------------------------------------------------------------------- helpers


def _programme(session: Session, slug: str) -> tuple[list[Programme], Programme | None]:
    every = list(session.scalars(select(Programme).order_by(Programme.slug)))
    chosen = next((p for p in every if p.slug == slug), None)
    return every, chosen if chosen is not None or not every else every[0]


def summary(spec: RuleSpec, currency: str, lang: str) -> str:
    """The rule in one sentence, for the list ("2 times the points on matching lines")."""
    _ = translate_for(lang)

    def format_rate(value: Decimal) -> str:
        return format_decimal(value.normalize(), locale="de_DE" if lang == "de" else "en_GB")

    effect = spec.effect
    lines = getattr(effect, "scope", None) == "lines" or spec.line_condition is not None
    if effect.type == "points_per_unit":
        text = _("{rate} points per {currency} 1", rate=format_rate(effect.rate), currency=currency)
    elif effect.type == "multiplier":
        text = _("{factor} times the points", factor=format_rate(effect.factor))
    elif effect.type == "fixed":
        text = (
            _("+{points} points per matching line", points=effect.points)
            if lines
            else _("+{points} points per event", points=effect.points)
        )
    elif effect.type == "percent_bonus":
        text = _("+{percent} % bonus", percent=format_rate(effect.percent))
    else:
        text = _("a badge, no points")
    if lines and effect.type != "fixed":
        text += " " + _("on matching lines")
    return text


@dataclass
class RuleRow:
    rule: Rule
    spec: RuleSpec
    summary: str
    changed: bool


def _local(value: str, timezone: str) -> datetime:
    """A ``datetime-local`` field as an instant in the programme's time zone."""
    return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(timezone))


def _to_form(spec: dict[str, Any], timezone: str) -> dict[str, Any]:
    """A stored draft as the form's fields (strings, as a browser would send them)."""
    effect = spec.get("effect", {})
    value = next(
        (str(effect[k]) for k in ("rate", "factor", "points", "percent") if k in effect), ""
    )

    def local(key: str) -> str:
        raw = spec.get(key)
        if not raw:
            return ""
        return datetime.fromisoformat(raw).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")

    limits = [
        {
            "per": limit.get("per", ""),
            "count": str(limit.get("max_count") or ""),
            "points": str(limit.get("max_points") or ""),
        }
        for limit in spec.get("limits", [])
    ]
    while len(limits) < LIMIT_ROWS:
        limits.append({"per": "", "count": "", "points": ""})
    return {
        "name": spec.get("name", ""),
        "description": spec.get("description", ""),
        "trigger": spec.get("trigger", "purchase"),
        "condition": spec.get("condition", ""),
        "line_condition": spec.get("line_condition", ""),
        "effect": effect.get("type", "points_per_unit"),
        "value": value,
        "scope": effect.get("scope") or "order",
        "stacking": spec.get("stacking", "combinable"),
        "priority": str(spec.get("priority", 100)),
        "budget_points": str(spec.get("budget_points") or ""),
        "valid_from": local("valid_from"),
        "valid_until": local("valid_until"),
        "limits": limits,
    }


BLANK: dict[str, Any] = {
    "name": "",
    "trigger": "purchase",
    "effect": {"type": "multiplier", "factor": "2", "scope": "order"},
}


@dataclass
class Sent:
    """What the editor's form sent, as typed."""

    fields: dict[str, Any]

    def spec_data(
        self, timezone: str, keep: dict[str, Any], errors: dict[str, str]
    ) -> dict[str, Any]:
        """The specification the form describes (``keep``: draft fields the form does
        not show, such as a badge or a member list). Date fields that do not parse are
        reported in ``errors``."""
        f = self.fields
        effect: dict[str, Any] = {"type": f["effect"]}
        value = f["value"].strip()
        if f["effect"] != "fixed":
            value = value.replace(",", ".")
        key = {
            "points_per_unit": "rate",
            "multiplier": "factor",
            "fixed": "points",
            "percent_bonus": "percent",
        }.get(f["effect"])
        if key is not None:
            effect[key] = value
        if f["effect"] in ("points_per_unit", "multiplier"):
            effect["scope"] = f["scope"]
        elif f["effect"] == "fixed" and f["scope"] == "lines":
            effect["scope"] = "lines"
        data: dict[str, Any] = {
            k: v for k, v in keep.items() if k in ("badge", "members", "rounding")
        }
        data.update(
            name=f["name"],
            trigger=f["trigger"],
            effect=effect,
            stacking=f["stacking"],
            priority=f["priority"].strip() or "100",
        )
        for optional in ("description", "condition", "line_condition", "budget_points"):
            if f[optional].strip():
                data[optional] = (
                    f[optional].strip()
                    if optional != "budget_points"
                    else (f[optional].strip().replace(".", ""))
                )
        for edge in ("valid_from", "valid_until"):
            if f[edge].strip():
                try:
                    data[edge] = _local(f[edge].strip(), timezone).isoformat()
                except ValueError:
                    errors[edge] = "not a date and time"
        limits = []
        for row in f["limits"]:
            if not row["per"]:
                continue
            limit: dict[str, Any] = {"per": row["per"]}
            if row["count"].strip():
                limit["max_count"] = row["count"].strip()
            if row["points"].strip():
                limit["max_points"] = row["points"].strip()
            limits.append(limit)
        data["limits"] = limits
        return data


def _field_of(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "form"
    head = str(loc[0])
    if head == "effect":
        return "value"
    if head == "limits":
        return "limits"
    if head in ("badge", "members", "rounding"):
        return "form"
    return head


@dataclass
class Problem:
    message: str
    line: int | None = None
    column: int | None = None
    source: str | None = None

    @property
    def caret(self) -> str | None:
        """The expression's line and a ``^`` under the column the parser stopped at."""
        if self.source is None or self.line is None or self.column is None:
            return None
        lines = self.source.splitlines() or [""]
        if self.line - 1 >= len(lines):
            return None
        return lines[self.line - 1] + "\n" + " " * max(self.column - 1, 0) + "^"


def validate(
    data: dict[str, Any], sent: dict[str, Any], _: Callable[..., str]
) -> tuple[RuleSpec | None, dict[str, Problem]]:
    """``RuleSpec`` from the form's data, or the problems by form field (in the language
    of ``_``, where Treu words them)."""
    try:
        return RuleSpec.model_validate(data), {}
    except ValidationError as exc:
        problems: dict[str, Problem] = {}
        for error in exc.errors():
            field = _field_of(tuple(error["loc"]))
            position = expression_error_details(dict(error))
            if position is not None:
                problem = Problem(
                    str(position["message"]),
                    position["line"],
                    position["column"],
                    sent.get(field),
                )
            else:
                problem = Problem(message_of(error, _))
            if field in problems:
                problems[field].message += "; " + problem.message
            else:
                problems[field] = problem
        return None, problems


def _sent(
    name: str,
    description: str,
    trigger: str,
    condition: str,
    line_condition: str,
    effect: str,
    value: str,
    scope: str,
    stacking: str,
    priority: str,
    budget_points: str,
    valid_from: str,
    valid_until: str,
    limit_per: list[str],
    limit_count: list[str],
    limit_points: list[str],
) -> Sent:
    limits = [
        {"per": per, "count": count, "points": points}
        for per, count, points in zip(limit_per, limit_count, limit_points, strict=False)
    ]
    while len(limits) < LIMIT_ROWS:
        limits.append({"per": "", "count": "", "points": ""})
    return Sent(
        {
            "name": name,
            "description": description,
            "trigger": trigger,
            "condition": condition,
            "line_condition": line_condition,
            "effect": effect,
            "value": value,
            "scope": scope,
            "stacking": stacking,
            "priority": priority,
            "budget_points": budget_points,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "limits": limits,
        }
    )


# --------------------------------------------------------------------------- list


@router.get("/rules")
def rules_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    wanted = status if status in {s.value for s in RuleStatus} else None
    with database(request).unit_of_work(write=False) as session:
        every, chosen = _programme(session, programme)
        rows: list[RuleRow] = []
        if chosen is not None:
            found = rules.all(session, programme_id=chosen.id, status=wanted)
            published = rules.published_specs(session, found)
            for rule in found:
                draft = rules.draft_spec(rule)
                shown = published.get(rule.id) or draft
                rows.append(
                    RuleRow(
                        rule,
                        shown,
                        summary(shown, chosen.currency, language(request)),
                        rule.id not in published or published[rule.id] != draft,
                    )
                )
        return render(
            request,
            "admin/rules.html",
            timezone=chosen.timezone if chosen is not None else "UTC",
            staff=staff,
            programmes=every,
            chosen=chosen,
            status=wanted or "",
            rows=rows,
            statuses=[s.value for s in RuleStatus],
            done=request.query_params.get("done"),
        )


# --------------------------------------------------------------------------- editor


def _triggers(session: Session, programme: Programme, lang: str) -> list[str]:
    names = [
        t.name for t in event_types.list(session, programme.id, lang="de" if lang == "de" else "en")
    ]
    return ["purchase", *(n for n in names if n != "purchase")]


def _editor(
    request: Request,
    staff: Staff,
    *,
    programme: Programme,
    rule: Rule | None,
    form: dict[str, Any],
    problems: dict[str, Problem] | None = None,
    status_code: int = 200,
    error: str | None = None,
    simulation: dict[str, Any] | None = None,
    period: tuple[date, date, str] | None = None,
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        triggers = _triggers(session, programme, lang)
        published = rules.published_spec(session, rule) if rule is not None else None
        changed = rule is not None and (published is None or published != rules.draft_spec(rule))
    today = local_date(utc_now(), programme.timezone)
    since, until, by = period or (
        today - timedelta(days=DEFAULT_DAYS),
        today - timedelta(days=1),
        "week",
    )
    return render(
        request,
        "admin/rules_editor.html",
        status_code=status_code,
        timezone=programme.timezone,
        staff=staff,
        programme=programme,
        rule=rule,
        form=form,
        problems=problems or {},
        error=error,
        triggers=triggers,
        effects=EFFECTS,
        published=published,
        published_summary=summary(published, programme.currency, lang) if published else None,
        changed=changed,
        since=since,
        until=until,
        by=by,
        simulation=simulation,
        done=request.query_params.get("done"),
        bar_chart=bar_chart,
        money=lambda minor: format_money(minor, programme.currency, lang),
    )


@router.get("/rules/new")
def new_rule(
    request: Request,
    staff: Annotated[Staff, Depends(need("rules.write"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        _, chosen = _programme(session, programme)
    if chosen is None:
        return RedirectResponse("/admin/rules", status_code=303)
    return _editor(request, staff, programme=chosen, rule=None, form=_to_form(BLANK, "UTC"))


LimitList = Annotated[list[str], Form(max_length=MAX_LIMITS)]


@router.post("/rules/new")
def create_rule(
    request: Request,
    staff: Annotated[Staff, Depends(need("rules.write"))],
    csrf: Form_,
    programme: Form_,
    name: Form_ = "",
    description: Text_ = "",
    trigger: Form_ = "purchase",
    condition: Text_ = "",
    line_condition: Text_ = "",
    effect: Form_ = "multiplier",
    value: Form_ = "",
    scope: Form_ = "order",
    stacking: Form_ = "combinable",
    priority: Form_ = "100",
    budget_points: Form_ = "",
    valid_from: Form_ = "",
    valid_until: Form_ = "",
    limit_per: LimitList = [],  # noqa: B006 (FastAPI copies defaults)
    limit_count: LimitList = [],  # noqa: B006
    limit_points: LimitList = [],  # noqa: B006
) -> Response:
    check_csrf(csrf, staff.csrf)
    sent = _sent(
        name, description, trigger, condition, line_condition, effect, value, scope, stacking,
        priority, budget_points, valid_from, valid_until, limit_per, limit_count, limit_points,
    )  # fmt: skip
    with database(request).unit_of_work(write=False) as session:
        chosen = programmes.get(session, programme)
    return _save(request, staff, chosen, None, sent, revision=None)


def _save(
    request: Request,
    staff: Staff,
    programme: Programme,
    rule: Rule | None,
    sent: Sent,
    *,
    revision: int | None,
) -> Response:
    date_errors: dict[str, str] = {}
    data = sent.spec_data(programme.timezone, rule.draft if rule else {}, date_errors)
    spec, problems = validate(data, sent.fields, translate_for(language(request)))
    for field, message in date_errors.items():
        problems[field] = Problem(message)
    if spec is None or problems:
        return _editor(
            request, staff, programme=programme, rule=rule, form=sent.fields,
            problems=problems, status_code=422,
        )  # fmt: skip
    actor = f"staff:{staff.email}"
    try:
        with database(request).unit_of_work() as session:
            if rule is None:
                attached = programmes.get(session, programme.id)
                saved = rules.create(session, programme=attached, spec=spec, actor=actor)
            else:
                saved = rules.get(session, rule.id)
                campaigns.refuse_managed(session, saved)
                saved = rules.update(session, saved, spec=spec, actor=actor, revision=revision)
            saved_id = saved.id
    except TreuError as error:
        field = "trigger" if error.code == "unknown_trigger" else "form"
        return _editor(
            request, staff, programme=programme, rule=rule, form=sent.fields,
            problems={field: Problem(error.detail)}, status_code=422,
        )  # fmt: skip
    return RedirectResponse(f"/admin/rules/{saved_id}?done=saved", status_code=303)


def _load(request: Request, rule_id: uuid.UUID) -> tuple[Rule, Programme]:
    with database(request).unit_of_work(write=False) as session:
        rule = rules.get(session, rule_id)
        return rule, programmes.get(session, rule.programme_id)


@router.get("/rules/{rule_id}")
def edit_rule(
    request: Request,
    rule_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rules.write"))],
) -> Response:
    rule, programme = _load(request, rule_id)
    return _editor(
        request, staff, programme=programme, rule=rule,
        form=_to_form(rule.draft, programme.timezone),
    )  # fmt: skip


@router.post("/rules/{rule_id}")
def update_rule(
    request: Request,
    rule_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rules.write"))],
    csrf: Form_,
    revision: Annotated[int, Form(ge=0)],
    name: Form_ = "",
    description: Text_ = "",
    trigger: Form_ = "purchase",
    condition: Text_ = "",
    line_condition: Text_ = "",
    effect: Form_ = "multiplier",
    value: Form_ = "",
    scope: Form_ = "order",
    stacking: Form_ = "combinable",
    priority: Form_ = "100",
    budget_points: Form_ = "",
    valid_from: Form_ = "",
    valid_until: Form_ = "",
    limit_per: LimitList = [],  # noqa: B006
    limit_count: LimitList = [],  # noqa: B006
    limit_points: LimitList = [],  # noqa: B006
) -> Response:
    check_csrf(csrf, staff.csrf)
    sent = _sent(
        name, description, trigger, condition, line_condition, effect, value, scope, stacking,
        priority, budget_points, valid_from, valid_until, limit_per, limit_count, limit_points,
    )  # fmt: skip
    rule, programme = _load(request, rule_id)
    return _save(request, staff, programme, rule, sent, revision=revision)


# --------------------------------------------------------------------------- simulation


def _day(text: str, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        return default


def _buckets(
    since: date, until: date, by: str, days: dict[date, int]
) -> tuple[list[date], list[int]]:
    """Points per day, or per week (weeks start on Monday), from ``since`` to ``until``."""
    if by == "day":
        starts = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    else:
        first = since - timedelta(days=since.weekday())
        starts = [first + timedelta(weeks=n) for n in range((until - first).days // 7 + 1)]
    values = [0] * len(starts)
    for day, points in days.items():
        if since <= day <= until:
            index = (day - since).days if by == "day" else (day - starts[0]).days // 7
            values[index] += points
    return starts, values


@router.get("/rules/{rule_id}/simulation")
def simulate_rule(
    request: Request,
    rule_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rules.write"))],
    start: Annotated[str, Query(alias="from", max_length=10)] = "",
    end: Annotated[str, Query(alias="to", max_length=10)] = "",
    by: Annotated[str, Query(max_length=4)] = "week",
) -> Response:
    """What the saved draft would have awarded over recorded history: the draft replayed
    as a new rule beside the others (the stored rule left out), so its own awards are
    the difference it makes."""
    lang = language(request)
    _ = translate_for(lang)
    rule, programme = _load(request, rule_id)
    today = local_date(utc_now(), programme.timezone)
    until = _day(end, today - timedelta(days=1))
    since = _day(start, until - timedelta(days=DEFAULT_DAYS - 1))
    by = "day" if by == "day" else "week"
    form = _to_form(rule.draft, programme.timezone)
    zone = ZoneInfo(programme.timezone)
    try:
        request_in = SimulationIn.model_validate(
            {
                "programme": programme.slug,
                "from": datetime.combine(since, time(), zone),
                "until": datetime.combine(until + timedelta(days=1), time(), zone),
                "rules": [rule.draft],
                "exclude": [str(rule.id)],
            }
        )
        with database(request).unit_of_work(write=False) as session:
            result = simulate_in_full(session, request_in)
    except TreuError as error:
        return _editor(
            request, staff, programme=programme, rule=rule, form=form,
            status_code=422, error=error.detail, period=(since, until, by),
        )  # fmt: skip
    mine = result.draft_rules.get("new-1") or RuleReplay(rule.name, 0, 0, 0, {})
    starts, values = _buckets(since, until, by, mine.days)
    labels = [s.strftime("%d.%m.") if lang == "de" else s.strftime("%d %b") for s in starts]
    title = _("Points per day") if by == "day" else _("Points per week")
    return _editor(
        request, staff, programme=programme, rule=rule, form=form,
        period=(since, until, by),
        simulation={
            "rule": mine,
            "out": result.out,
            "worth": liability_minor(mine.points, programme.point_value_minor),
            "events": sum(result.out.events.get(k, 0) for k in ("purchases", "engagement")),
            "title": title,
            "labels": labels,
            "series": [Series(_("points"), values)],
            "period_label": _("Day") if by == "day" else _("Week"),
        },
    )  # fmt: skip


# --------------------------------------------------------------------------- publication


def _action(name: str, apply: Callable[..., Rule], done: str) -> Callable[..., Response]:
    """The route of one publication action (``POST /admin/rules/{id}/<name>``): check the
    form, refuse a rule that a campaign manages, apply, and back to the editor saying
    ``done`` — or the editor with the service's error."""

    def act(
        request: Request,
        rule_id: uuid.UUID,
        staff: Annotated[Staff, Depends(need("rules.publish"))],
        csrf: Form_,
    ) -> Response:
        check_csrf(csrf, staff.csrf)
        try:
            with database(request).unit_of_work() as session:
                rule = rules.get(session, rule_id)
                campaigns.refuse_managed(session, rule)
                apply(session, rule, actor=f"staff:{staff.email}")
        except TreuError as error:
            rule, programme = _load(request, rule_id)
            return _editor(
                request, staff, programme=programme, rule=rule,
                form=_to_form(rule.draft, programme.timezone), status_code=422,
                error=error.detail,
            )  # fmt: skip
        return RedirectResponse(f"/admin/rules/{rule_id}?done={done}", status_code=303)

    act.__name__ = f"{name}_rule"
    return act


# A paused rule applies again by publishing its draft (the same version if the draft has
# not changed).
for _name, _apply, _done in (
    ("publish", rules.publish, "published"),
    ("pause", rules.pause, "paused"),
    ("resume", rules.publish, "resumed"),
):
    router.post(f"/rules/{{rule_id}}/{_name}")(_action(_name, _apply, _done))
