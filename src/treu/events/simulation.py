"""What a draft rule set would have cost: replay the recorded events of a period.

``simulate`` reads the events of a period in ``occurred_at`` order and evaluates each
one twice — under the published rules (what ``rules.active`` applies to new events) and
under the draft set (the current draft of every active or never-published rule, plus
extra specifications from the request, minus excluded ids) — with the same views
ingestion builds (``purchase_view``, ``member_view``, ``line_views``), so the published
column of a period ingested under today's rules reproduces what the ledger credited.

Nothing is written: the unit of work is read-only and the limit counters are in memory.
Each set has its own ``Usage`` that is never loaded from or flushed to ``rule_usage``,
so per-member limits and budgets start at zero at ``from`` and count only the replay.

Simplifications, reported in ``notes``:

* returns are ignored (a purchase earns on all its lines, as it did on the day);
* manual adjustments (not events: ``ledger_adjustments``) are not replayed, only
  counted by the time they were made;
* members are taken as they are now (status, birthday, attributes); ``days_enrolled``
  and the birthday month are computed at each event's time; blocked and closed members
  earn nothing, nor do anonymous purchases;
* badges are counted as awards but cost nothing.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from treu.errors import Invalid
from treu.events.models import Event, PurchaseLine
from treu.events.service import line_views, purchase_view
from treu.kit.money import liability_minor as liability_minor  # its home; imported here by tests
from treu.kit.time import iso
from treu.ledger.models import LedgerAdjustment
from treu.members.models import Member, MemberStatus
from treu.members.service import MemberKey
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.engine import EventView, MemberView, RuleSet
from treu.rules.models import RuleStatus
from treu.rules.service import BASE_ID, Usage, member_view, rules, segments_for
from treu.rules.spec import RuleSpec, expression_error_details

MAX_SPAN = timedelta(days=366)
CHUNK = 2_000
"""Events read per query (with their lines and any members not seen yet)."""
TOP_RULES = 10
MAX_EXTRA_RULES = 50
_NOT_EARNING = frozenset({"return"})


class SimulationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "programme": "demo",
                    "from": "2026-01-01T00:00:00+01:00",
                    "until": "2026-04-01T00:00:00+02:00",
                    "rules": [
                        {
                            "name": "Organic triple points",
                            "trigger": "purchase",
                            "line_condition": "'organic' in line.tags",
                            "effect": {"type": "multiplier", "factor": "3", "scope": "lines"},
                        }
                    ],
                    "exclude": ["0193a1c2-7f00-7000-8000-000000000001"],
                }
            ]
        },
    )

    programme: str = Field(min_length=1, max_length=64, description="Programme slug or id")
    from_: AwareDatetime = Field(alias="from", description="Start of the period (inclusive)")
    until: AwareDatetime = Field(description="End of the period (exclusive); at most 366 days")
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_RULES,
        description="Extra rule specifications for the draft set (not saved); reported as "
        "new-1, new-2, ...",
    )
    exclude: list[str] = Field(
        default_factory=list,
        max_length=500,
        description="Rule ids to leave out of the draft set ('base': without the base rate)",
    )


# --------------------------------------------------------------------------- the answer


class SimulatedRule(BaseModel):
    rule_id: str = Field(description="Rule id, 'base', 'new-1', ... or 'others'")
    name: str
    points: int
    awards: int = Field(description="Events the rule gave an award for (badges included)")
    members: int
    liability_minor: int


class SimulationSummary(BaseModel):
    points: int
    members: int = Field(description="Distinct members who earned more than 0 points")
    liability_minor: int = Field(
        description="points x the programme's point value, rounded half-up to minor units"
    )
    currency: str
    by_rule: list[SimulatedRule] = Field(description="Top 10 by points, then 'others'")


class SimulationDifference(BaseModel):
    points: int
    liability_minor: int
    members: int


class SimulationOut(BaseModel):
    programme: str
    period: dict[str, str]
    events: dict[str, int] = Field(
        description="purchases, engagement, anonymous, members_not_earning, "
        "returns_ignored, adjustments_ignored"
    )
    published: SimulationSummary
    draft: SimulationSummary
    difference: SimulationDifference = Field(description="draft minus published")
    notes: list[str]
    seconds: float = Field(description="Time the simulation took")


# --------------------------------------------------------------------------- tallies


@dataclass
class _RuleTally:
    name: str
    points: int = 0
    awards: int = 0
    members: set[uuid.UUID] = field(default_factory=set)
    days: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    """Points per day of the event in the programme's time zone (the console's chart)."""


@dataclass(frozen=True, slots=True)
class RuleReplay:
    """One rule of the draft set in a replay, in full: the API's ``by_rule`` keeps the
    top ten only, and has no days; the console shows one rule's awards over time."""

    name: str
    points: int
    awards: int
    members: int
    days: dict[date, int]


@dataclass(frozen=True, slots=True)
class Simulated:
    out: SimulationOut
    draft_rules: dict[str, RuleReplay]
    """Every rule of the draft set that awarded something, by rule id (``new-1``, ...)."""


@dataclass
class _Side:
    """One rule set under replay: compiled once, with its own in-memory limit counters."""

    rule_set: RuleSet
    usage: Usage
    points: int = 0
    members: set[uuid.UUID] = field(default_factory=set)
    by_rule: dict[str, _RuleTally] = field(default_factory=dict)

    def replay(self, view: EventView, member: MemberView, member_id: uuid.UUID) -> None:
        evaluation = self.rule_set.evaluate(view, member, self.usage.view(member_id, view.date))
        for award in evaluation.awards:
            if award.rule_id != BASE_ID:  # as ingestion: every award counts for limits
                self.usage.record(member_id, view.date, award.rule_id, award.points)
            tally = self.by_rule.get(award.rule_id)
            if tally is None:
                tally = self.by_rule[award.rule_id] = _RuleTally(award.rule_name)
            tally.points += award.points
            tally.awards += 1
            tally.members.add(member_id)
            tally.days[view.date] += award.points
        if evaluation.points > 0:
            self.points += evaluation.points
            self.members.add(member_id)

    def summary(self, programme: Programme) -> SimulationSummary:
        value = programme.point_value_minor
        ranked = sorted(self.by_rule.items(), key=lambda kv: (-kv[1].points, -kv[1].awards, kv[0]))
        by_rule = [
            SimulatedRule(
                rule_id=rule_id,
                name=tally.name,
                points=tally.points,
                awards=tally.awards,
                members=len(tally.members),
                liability_minor=liability_minor(tally.points, value),
            )
            for rule_id, tally in ranked[:TOP_RULES]
        ]
        rest = [tally for _, tally in ranked[TOP_RULES:]]
        if rest:
            points = sum(t.points for t in rest)
            by_rule.append(
                SimulatedRule(
                    rule_id="others",
                    name=f"{len(rest)} other rules",
                    points=points,
                    awards=sum(t.awards for t in rest),
                    members=len(set().union(*(t.members for t in rest))),
                    liability_minor=liability_minor(points, value),
                )
            )
        return SimulationSummary(
            points=self.points,
            members=len(self.members),
            liability_minor=liability_minor(self.points, value),
            currency=programme.currency,
            by_rule=by_rule,
        )


# --------------------------------------------------------------------------- rule sets


@dataclass
class _DraftSet:
    specs: list[tuple[str, int, RuleSpec]]
    with_base: bool
    new: int
    excluded: int
    paused: int


def _limited(specs: Sequence[tuple[str, int, RuleSpec]]) -> dict[str, RuleSpec]:
    return {
        rule_id: spec for rule_id, _, spec in specs if spec.limits or spec.budget_points is not None
    }


def _extra_spec(
    session: Session, programme: Programme, raw: dict[str, Any], where: str
) -> tuple[RuleSpec | None, list[dict[str, Any]]]:
    """An extra rule of the request, validated like ``POST /v1/rules`` (a ``programme``
    key, as in a copied rule body, is ignored)."""
    from treu.rules.event_types import event_types

    data = {k: v for k, v in raw.items() if k != "programme"}
    try:
        spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            path = ".".join(str(p) for p in error["loc"])
            item: dict[str, Any] = {
                "field": f"{where}.{path}" if path else where,
                "message": error["msg"],
            }
            position = expression_error_details(dict(error))
            if position is not None:
                item.update({k: position[k] for k in ("line", "column", "offset")})
            errors.append(item)
        return None, errors
    if spec.trigger != "purchase" and event_types.get(session, programme.id, spec.trigger) is None:
        message = f"unknown event type {spec.trigger!r}"
        return None, [{"field": f"{where}.trigger", "message": message}]
    return spec, []


def draft_set(session: Session, programme: Programme, request: SimulationIn) -> _DraftSet:
    """The drafts of the programme's active and never-published rules (paused rules are
    left out), plus ``request.rules`` as new-1, new-2, ..., minus ``request.exclude``."""
    stored = rules.all(session, programme_id=programme.id)
    by_id = {str(rule.id): rule for rule in stored}
    errors: list[dict[str, Any]] = []
    excluded: set[str] = set()
    with_base = True
    for n, ref in enumerate(request.exclude):
        text = ref.strip()
        if text == BASE_ID:
            with_base = False
            continue
        try:
            key = str(uuid.UUID(text))
        except ValueError:
            errors.append({"field": f"exclude.{n}", "message": "not a rule id"})
            continue
        if key not in by_id:
            errors.append({"field": f"exclude.{n}", "message": "no such rule in this programme"})
        excluded.add(key)
    specs: list[tuple[str, int, RuleSpec]] = []
    paused = 0
    for rule_id, rule in by_id.items():
        if rule.status == RuleStatus.paused.value:
            paused += 1
            continue
        if rule_id in excluded:
            continue
        specs.append((rule_id, rule.version or 0, rules.draft_spec(rule)))
    for n, raw in enumerate(request.rules):
        spec, problems = _extra_spec(session, programme, raw, f"rules.{n}")
        errors.extend(problems)
        if spec is not None:
            specs.append((f"new-{n + 1}", 0, spec))
    if errors:
        raise Invalid("the simulation request is not valid", errors=errors)
    return _DraftSet(specs, with_base, len(request.rules), len(excluded), paused)


# --------------------------------------------------------------------------- replay


def check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise Invalid(
            "until must be after from",
            errors=[{"field": "until", "message": "must be after from"}],
        )
    if end - start > MAX_SPAN:
        raise Invalid(
            "the period may span at most 366 days",
            errors=[{"field": "until", "message": "at most 366 days after from"}],
        )


def _chunks(
    session: Session, programme: Programme, start: datetime, end: datetime
) -> Iterator[Sequence[Any]]:
    """The period's purchases and engagement events in (occurred_at, id) order, CHUNK at
    a time (keyset pagination: every chunk is one index range scan)."""
    last: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = select(
            Event.id,
            Event.type,
            Event.member_id,
            Event.occurred_at,
            Event.channel,
            Event.store,
            Event.currency,
        ).where(
            Event.programme_id == programme.id,
            Event.occurred_at >= start,
            Event.occurred_at < end,
            Event.type.not_in(_NOT_EARNING),
        )
        if last is not None:
            query = query.where(
                or_(
                    Event.occurred_at > last[0],
                    and_(Event.occurred_at == last[0], Event.id > last[1]),
                )
            )
        rows = session.execute(query.order_by(Event.occurred_at, Event.id).limit(CHUNK)).all()
        if rows:
            yield rows
        if len(rows) < CHUNK:
            return
        last = (rows[-1].occurred_at, rows[-1].id)


def _lines(session: Session, event_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    found: dict[uuid.UUID, list[Any]] = defaultdict(list)
    if not event_ids:
        return found
    for row in session.execute(
        select(
            PurchaseLine.event_id,
            PurchaseLine.sku,
            PurchaseLine.name,
            PurchaseLine.category,
            PurchaseLine.quantity,
            PurchaseLine.unit_price_minor,
            PurchaseLine.tags,
        )
        .where(PurchaseLine.event_id.in_(event_ids))
        .order_by(PurchaseLine.event_id, PurchaseLine.line_no)
    ).all():
        found[row.event_id].append(row)
    return found


def _attributes(session: Session, event_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Engagement events' attributes (a purchase's ``data`` is not needed: not read)."""
    if not event_ids:
        return {}
    rows = session.execute(select(Event.id, Event.data).where(Event.id.in_(event_ids))).all()
    return {event_id: (data or {}).get("attributes") or {} for event_id, data in rows}


def _load_members(
    session: Session, wanted: set[uuid.UUID], known: dict[uuid.UUID, MemberKey]
) -> None:
    missing = [m for m in wanted if m not in known]
    if not missing:
        return
    for row in session.execute(
        select(
            Member.id,
            Member.status,
            Member.enrolled_at,
            Member.birthday,
            Member.language,
            Member.channel,
            Member.attributes,
        ).where(Member.id.in_(missing))
    ).all():
        known[row.id] = MemberKey(
            row.id,
            row.status,
            row.enrolled_at,
            row.birthday,
            row.language,
            row.channel,
            row.attributes,
        )


def _ignored(
    session: Session, programme: Programme, start: datetime, end: datetime
) -> dict[str, int]:
    """The period's events that are not replayed, by type, and its manual adjustments
    (``adjustment``), which are no events."""
    rows = session.execute(
        select(Event.type, func.count())
        .where(
            Event.programme_id == programme.id,
            Event.occurred_at >= start,
            Event.occurred_at < end,
            Event.type.in_(_NOT_EARNING),
        )
        .group_by(Event.type)
    ).all()
    adjusted = session.scalar(
        select(func.count()).where(
            LedgerAdjustment.programme_id == programme.id,
            LedgerAdjustment.created_at >= start,
            LedgerAdjustment.created_at < end,
        )
    )
    return {str(kind): int(count) for kind, count in rows} | {"adjustment": int(adjusted or 0)}


def simulate(session: Session, request: SimulationIn) -> SimulationOut:
    """Replay the period's events through the published and the draft rule set; see the
    module docstring. Reads only: run it in a read-only unit of work."""
    return simulate_in_full(session, request).out


def simulate_in_full(session: Session, request: SimulationIn) -> Simulated:
    """``simulate``, plus every draft rule's awards with its points per day."""
    started = time.perf_counter()
    start, end = request.from_, request.until
    check_period(start, end)
    programme = programmes.get(session, request.programme)
    drafts = draft_set(session, programme, request)
    active = rules.active(session, programme)
    published = _Side(active.rule_set, Usage(session, dict(active.limited)))
    draft = _Side(
        rules.compile(programme, drafts.specs, with_base=drafts.with_base),
        Usage(session, _limited(drafts.specs)),
    )
    sides = (published, draft)

    counts = {"purchases": 0, "engagement": 0, "anonymous": 0, "members_not_earning": 0}
    known: dict[uuid.UUID, MemberKey] = {}
    inactive = {MemberStatus.blocked.value, MemberStatus.closed.value}
    for rows in _chunks(session, programme, start, end):
        _load_members(session, {r.member_id for r in rows if r.member_id is not None}, known)
        earning = [r for r in rows if r.member_id is not None]
        # ``member.segments``: each member's segments now (the history records when a
        # member entered or left a segment, not what the segment held at each event);
        # read only for a side whose conditions use them.
        ids = {r.member_id for r in earning if r.member_id is not None}
        segments = [segments_for(session, side.rule_set, ids) for side in sides]
        lines = _lines(session, [r.id for r in earning if r.type == "purchase"])
        attributes = _attributes(session, [r.id for r in earning if r.type != "purchase"])
        for row in rows:
            is_purchase = row.type == "purchase"
            counts["purchases" if is_purchase else "engagement"] += 1
            if row.member_id is None:
                counts["anonymous"] += 1
                continue
            member = known.get(row.member_id)
            if member is None or member.status in inactive:
                counts["members_not_earning"] += 1
                continue
            if is_purchase:
                view = purchase_view(
                    programme,
                    occurred_at=row.occurred_at,
                    currency=row.currency or programme.currency,
                    lines=line_views(lines.get(row.id, [])),
                    channel=row.channel,
                    store=row.store,
                )
            else:
                view = EventView.engagement(
                    row.type,
                    occurred_at=row.occurred_at,
                    timezone=programme.timezone,
                    attrs=attributes.get(row.id, {}),
                    channel=row.channel,
                    store=row.store,
                )
            mview = member_view(member, programme, row.occurred_at)
            for side, of in zip(sides, segments, strict=True):
                slugs = of.get(member.id)
                seen = (
                    member_view(member, programme, row.occurred_at, segments=slugs)
                    if slugs
                    else mview
                )
                side.replay(view, seen, member.id)

    ignored = _ignored(session, programme, start, end)
    before, after = published.summary(programme), draft.summary(programme)
    out = SimulationOut(
        programme=programme.slug,
        period={"from": iso(start), "until": iso(end), "timezone": programme.timezone},
        events={
            **counts,
            "returns_ignored": ignored.get("return", 0),
            "adjustments_ignored": ignored.get("adjustment", 0),
        },
        published=before,
        draft=after,
        difference=SimulationDifference(
            points=after.points - before.points,
            liability_minor=after.liability_minor - before.liability_minor,
            members=after.members - before.members,
        ),
        notes=_notes(programme, drafts),
        seconds=round(time.perf_counter() - started, 3),
    )
    return Simulated(
        out,
        {
            rule_id: RuleReplay(
                tally.name, tally.points, tally.awards, len(tally.members), dict(tally.days)
            )
            for rule_id, tally in draft.by_rule.items()
        },
    )


def _notes(programme: Programme, drafts: _DraftSet) -> list[str]:
    value = Decimal(programme.point_value_minor).normalize()
    notes = [
        f"Liability = points x point value ({value:f} minor units of {programme.currency} "
        "per point), rounded half-up to whole minor units (the total and each rule "
        "separately, so rule lines may not add up to the total exactly).",
        "Returns are ignored: every purchase earns on all its lines. Manual adjustments "
        "are not counted.",
        "Limits and budgets start at zero at 'from' and count only the replayed events.",
        "Members as they are now: anonymous purchases and events of blocked or closed "
        "members earn nothing; member.segments are each member's segments now; "
        "days_enrolled and the birthday month are computed at each event's time.",
        "Draft set: the current drafts of active and never-published rules"
        + (f" (paused rules left out: {drafts.paused})" if drafts.paused else "")
        + (f", {drafts.new} new" if drafts.new else "")
        + (f", {drafts.excluded} excluded" if drafts.excluded else "")
        + ("; without the base rate" if not drafts.with_base else "; plus the base rate")
        + ". Published set: the active rules' published versions plus the base rate.",
    ]
    return notes
