"""Earning rules in the database: drafts, publication, pausing, compiled rule sets and
the per-member limit counters.

Life of a rule: ``create`` stores a draft (validated: a rule with a bad expression is
never saved); ``update`` edits the draft (``revision`` guards against lost updates);
``publish`` freezes the draft as the next version (``rule_versions`` rows never change)
and makes it active; ``pause`` stops it until it is published again. Postings record the
rule id and version that produced them.

The programme's base rate (``points_per_currency_unit``) is rule ``base``: 1 point per
unit on the whole order, priority 1000 (after every database rule, so an exclusive rule
can take lines away from it), the programme's rounding. A programme that wants its base
earning defined by rules sets the rate to 0.

Compiled rule sets are cached per process for ``CACHE_SECONDS``: a publication takes
effect at once in the process that made it and within that time in the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.db.base import Query, WriteBatch, one_by_id, table_of
from treu.kit.cache import StampedCache
from treu.kit.money import Rounding
from treu.kit.time import utc_now
from treu.members.service import MemberKey
from treu.programmes.models import Programme
from treu.rules import budgets
from treu.rules.engine import (
    Award,
    CompiledRuleInput,
    Headroom,
    MemberView,
    RuleSet,
    compile_rule_set,
)
from treu.rules.errors import (
    BudgetRace,
    NothingToPublish,
    RuleNotFound,
    StaleRevision,
    UnknownTrigger,
)
from treu.rules.models import Rule, RuleStatus, RuleUsage, RuleVersion
from treu.rules.spec import Multiplier, PointsPerUnit, RuleSetSettings, RuleSpec
from treu.segments import membership
from treu.tiers.common import RULE_PREFIX, tier_award_details
from treu.tiers.maths import Ladder
from treu.tiers.service import tiers

CACHE_SECONDS = 5.0
BASE_ID = "base"
BASE_PRIORITY = 1000


def base_spec(rate: Decimal, rounding: str) -> RuleSpec:
    return RuleSpec(
        name="Base rate",
        trigger="purchase",
        effect=PointsPerUnit(rate=rate, scope="order"),
        rounding=Rounding(rounding),
        priority=BASE_PRIORITY,
    )


def base_input(rate: Decimal, rounding: str) -> CompiledRuleInput | None:
    if rate <= 0:
        return None
    return CompiledRuleInput(BASE_ID, 1, base_spec(rate, rounding))


TIER_PRIORITY = BASE_PRIORITY + 1
"""After the base rate: lines an exclusive rule took from the base get no tier bonus."""


def tier_input(code: str, factor: Decimal, name: str | None = None) -> CompiledRuleInput:
    """A tier's earn multiplier as the implicit rule ``tier.<code>``: "member.tier ==
    code" multiplies the base points, so it explains, stacks and is recomputed after a
    return like any published multiplier."""
    return CompiledRuleInput(
        RULE_PREFIX + code,
        1,
        RuleSpec(
            name=name or code,
            trigger="purchase",
            condition=f"member.tier == '{code}'",
            effect=Multiplier(factor=factor),
            priority=TIER_PRIORITY,
        ),
    )


def tier_inputs(ladder: Ladder) -> list[CompiledRuleInput]:
    return [
        tier_input(tier.code, tier.multiplier, tier.label("en"))
        for tier in ladder.tiers
        if tier.multiplier > 1
    ]


def is_tier_rule(rule_id: str) -> bool:
    return rule_id.startswith(RULE_PREFIX)


def award_details(award: Award, programme: Programme) -> dict[str, Any]:
    """What a posting stores to explain an award. The base rate keeps the foundation's
    template, which names the programme's own points ("1 Treuepunkt pro 1 € …")."""
    if is_tier_rule(award.rule_id) and isinstance(award.rule.effect, Multiplier):
        return tier_award_details(
            award.rule_id,
            award.version,
            award.rule.effect.factor,
            award.points,
            tiers.known_ladder(programme),
        )
    if award.rule_id != BASE_ID:
        return award.details()
    return {
        "template": "earn.base",
        "rule": {"id": BASE_ID, "version": 1},
        "params": {
            "rate": str(programme.points_per_currency_unit),
            "points_name": programme.points_name,
            "amount_minor": award.amount_minor,
            "currency": award.currency,
            "points": award.points,
        },
    }


def member_view(
    member: MemberKey,
    programme: Programme,
    at: datetime,
    *,
    tier: str | None = None,
    segments: Iterable[str] = (),
) -> MemberView:
    """The member as rule and challenge conditions see it at ``at`` (the event time):
    one definition, so a condition on ``member.*`` means the same in both."""
    return MemberView.of(
        at=at,
        timezone=programme.timezone,
        id=member.id,
        tier=tier,
        segments=segments,
        enrolled_at=member.enrolled_at,
        birthday=member.birthday,
        language=member.language,
        channel=member.channel,
        attrs=member.attributes,
    )


def segments_for(
    session: Session, rule_set: RuleSet, member_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, frozenset[str]]:
    """The active segments (slugs) of ``member_ids`` for ``member.segments``: one
    indexed query, and none at all when no condition of ``rule_set`` reads them."""
    if not rule_set.uses_segments or not member_ids:
        return {}
    return membership.slugs_of_many(session, member_ids=member_ids)


@dataclass
class _Cached:
    rule_set: RuleSet
    limited: dict[str, RuleSpec]


class RuleService:
    def __init__(self) -> None:
        self._cache: StampedCache[uuid.UUID, _Cached] = StampedCache(CACHE_SECONDS)
        self._by_versions: dict[tuple[Any, ...], RuleSet] = {}
        self._lock = threading.Lock()

    # --- editing ------------------------------------------------------------------------

    def create(self, session: Session, *, programme: Programme, spec: RuleSpec, actor: str) -> Rule:
        self._check_trigger(session, programme, spec)
        rule = Rule(
            programme_id=programme.id,
            name=spec.name,
            status=RuleStatus.draft.value,
            draft=spec.model_dump(mode="json", exclude_none=True),
            draft_revision=1,
        )
        session.add(rule)
        session.flush()
        self._audit(session, rule, actor, "rule.create", {"spec": rule.draft})
        return rule

    def update(
        self,
        session: Session,
        rule: Rule,
        *,
        spec: RuleSpec,
        actor: str,
        revision: int | None = None,
    ) -> Rule:
        """Replace the draft. With ``revision`` (the ``draft_revision`` the editor saw),
        a concurrent edit is refused instead of silently overwritten."""
        self._lock_rule(session, rule)
        if revision is not None and revision != rule.draft_revision:
            raise StaleRevision(
                f"the draft is at revision {rule.draft_revision}, not {revision}: reload it",
                revision=rule.draft_revision,
            )
        programme = session.get_one(Programme, rule.programme_id)
        self._check_trigger(session, programme, spec)
        rule.draft = spec.model_dump(mode="json", exclude_none=True)
        rule.name = spec.name
        rule.draft_revision += 1
        session.flush()
        self._audit(session, rule, actor, "rule.update", {"spec": rule.draft})
        return rule

    def publish(
        self, session: Session, rule: Rule, *, actor: str, now: datetime | None = None
    ) -> Rule:
        """Freeze the draft as the next version and make it active. Publishing an
        unchanged draft of a paused rule resumes it."""
        now = now or utc_now()
        self._lock_rule(session, rule)
        spec = RuleSpec.model_validate(rule.draft)  # re-validated: expressions compile
        programme = session.get_one(Programme, rule.programme_id)
        self._check_trigger(session, programme, spec)
        current = self.published_spec(session, rule)
        if current is not None and current == spec:
            if rule.status == RuleStatus.active.value:
                raise NothingToPublish(
                    f"version {rule.version} is published and the draft has not changed"
                )
        else:
            rule.version = (rule.version or 0) + 1
            session.add(
                RuleVersion(
                    rule_id=rule.id,
                    version=rule.version,
                    spec=rule.draft,
                    published_at=now,
                    published_by=actor,
                )
            )
        rule.trigger = spec.trigger
        rule.status = RuleStatus.active.value
        rule.published_at = now
        rule.paused_at = None
        session.flush()
        self._audit(session, rule, actor, "rule.publish", {"version": rule.version})
        self.invalidate(rule.programme_id)
        return rule

    def pause(
        self, session: Session, rule: Rule, *, actor: str, now: datetime | None = None
    ) -> Rule:
        self._lock_rule(session, rule)
        if rule.status == RuleStatus.active.value:
            rule.status = RuleStatus.paused.value
            rule.paused_at = now or utc_now()
            session.flush()
            self._audit(session, rule, actor, "rule.pause", {"version": rule.version})
            self.invalidate(rule.programme_id)
        return rule

    # --- reading ------------------------------------------------------------------------

    def get(self, session: Session, rule_id: uuid.UUID | str) -> Rule:
        return one_by_id(session, Rule, rule_id, missing=RuleNotFound, what="rule")

    def all(
        self, session: Session, *, programme_id: uuid.UUID, status: str | None = None
    ) -> list[Rule]:
        query = select(Rule).where(Rule.programme_id == programme_id)
        if status is not None:
            query = query.where(Rule.status == status)
        return list(session.scalars(query.order_by(Rule.created_at, Rule.id)))

    def published_spec(self, session: Session, rule: Rule) -> RuleSpec | None:
        if rule.version is None:
            return None
        row = session.get_one(RuleVersion, (rule.id, rule.version))
        return RuleSpec.model_validate(row.spec)

    def published_specs(self, session: Session, found: Sequence[Rule]) -> dict[uuid.UUID, RuleSpec]:
        """The latest published specification of each of ``found`` that has one, in one
        query (a list of rules shows them all)."""
        keys = [(rule.id, rule.version) for rule in found if rule.version is not None]
        if not keys:
            return {}
        rows = session.execute(
            select(RuleVersion.rule_id, RuleVersion.spec).where(
                tuple_(RuleVersion.rule_id, RuleVersion.version).in_(keys)
            )
        ).all()
        return {rule_id: RuleSpec.model_validate(spec) for rule_id, spec in rows}

    def draft_spec(self, rule: Rule) -> RuleSpec:
        return RuleSpec.model_validate(rule.draft)

    # --- compiled rule sets -------------------------------------------------------------

    def invalidate(self, programme_id: uuid.UUID) -> None:
        self._cache.invalidate(programme_id)

    def active(self, session: Session, programme: Programme) -> _Cached:
        """The programme's published, active rules compiled (cached).

        After ``CACHE_SECONDS`` one light query checks which rule versions are active;
        the rule set is compiled again only when they (or the programme's earning
        settings) changed, so a busy checkout never stalls on a recompilation."""
        # The tiers' version is on the programme row the caller holds: a tier change made
        # in another process is picked up with the next request, not after the TTL.
        return self._cache.get(
            programme.id,
            stamp=lambda: self._stamp(session, programme),
            build=lambda stamp: self._build(session, programme, stamp[0]),
            token=programme.tiers_version,
        )

    def _stamp(self, session: Session, programme: Programme) -> tuple[Any, ...]:
        """What the rule set is built from: active rule versions, the earning settings."""
        versions = tuple(
            session.execute(
                select(Rule.id, Rule.version)
                .where(Rule.programme_id == programme.id, Rule.status == RuleStatus.active.value)
                .order_by(Rule.id)
            ).all()
        )
        return (
            versions,
            programme.points_per_currency_unit,
            programme.rounding,
            programme.rounding_scope,
            programme.multiplier_stacking,
            programme.currency,
            programme.timezone,
            programme.tiers_version,
        )

    def _build(self, session: Session, programme: Programme, versions: tuple[Any, ...]) -> _Cached:
        rows = (
            session.execute(
                select(RuleVersion.rule_id, RuleVersion.version, RuleVersion.spec).where(
                    tuple_(RuleVersion.rule_id, RuleVersion.version).in_(
                        [(rule_id, version) for rule_id, version in versions]
                    )
                )
            ).all()
            if versions
            else []
        )
        inputs = [
            CompiledRuleInput(str(rule_id), version, RuleSpec.model_validate(spec))
            for rule_id, version, spec in rows
        ]
        inputs += tier_inputs(tiers.ladder(session, programme))
        return self._compile(programme, inputs)

    def compile(
        self,
        programme: Programme,
        specs: Sequence[tuple[str, int, RuleSpec]],
        *,
        with_base: bool = True,
    ) -> RuleSet:
        """A rule set of the given rules (drafts for a simulation, say) plus the base rate."""
        inputs = [CompiledRuleInput(rule_id, version, spec) for rule_id, version, spec in specs]
        return self._compile(programme, inputs, with_base=with_base).rule_set

    def _compile(
        self,
        programme: Programme,
        inputs: list[CompiledRuleInput],
        *,
        with_base: bool = True,
        base: tuple[Decimal, str] | None = None,
    ) -> _Cached:
        rate, rounding = base or (programme.points_per_currency_unit, programme.rounding)
        base_rule = base_input(Decimal(rate), rounding) if with_base else None
        everything = [*inputs, *([base_rule] if base_rule is not None else [])]
        rule_set = compile_rule_set(
            everything,
            RuleSetSettings.model_validate({"multiplier_stacking": programme.multiplier_stacking}),
            currency=programme.currency,
            rounding=Rounding(programme.rounding),
            rounding_scope=programme.rounding_scope,
            timezone=programme.timezone,
        )
        return _Cached(
            rule_set=rule_set,
            limited={
                i.rule_id: i.spec
                for i in inputs
                if i.spec.limits or i.spec.budget_points is not None
            },
        )

    def as_recorded(
        self,
        session: Session,
        programme: Programme,
        refs: Sequence[Sequence[Any]],
        *,
        base: tuple[Decimal, str] | None,
        tier: tuple[str, Decimal] | None = None,
    ) -> RuleSet:
        """The rule set a purchase was evaluated with (its recorded rule versions, base
        rate and tier multiplier), to compute what the kept lines of a partly returned
        order earn."""
        key = (
            programme.id,
            tuple((str(r[0]), int(r[1])) for r in refs),
            base,
            tier,
            programme.rounding,
            programme.rounding_scope,
            programme.multiplier_stacking,
        )
        found = self._by_versions.get(key)
        if found is not None:
            return found
        wanted = [
            (uuid.UUID(str(r[0])), int(r[1]))
            for r in refs
            if str(r[0]) != BASE_ID and not is_tier_rule(str(r[0]))
        ]
        inputs: list[CompiledRuleInput] = []
        if wanted:
            rows = session.execute(
                select(RuleVersion.rule_id, RuleVersion.version, RuleVersion.spec).where(
                    RuleVersion.rule_id.in_([w[0] for w in wanted])
                )
            ).all()
            specs = {(rid, v): spec for rid, v, spec in rows}
            inputs = [
                CompiledRuleInput(str(rid), v, RuleSpec.model_validate(specs[(rid, v)]))
                for rid, v in wanted
                if (rid, v) in specs
            ]
        if tier is not None:
            inputs.append(tier_input(tier[0], tier[1]))
        rule_set = self._compile(programme, inputs, with_base=base is not None, base=base).rule_set
        with self._lock:
            if len(self._by_versions) > 512:
                self._by_versions.clear()
            self._by_versions[key] = rule_set
        return rule_set

    # --- helpers ------------------------------------------------------------------------

    def _check_trigger(self, session: Session, programme: Programme, spec: RuleSpec) -> None:
        from treu.rules.event_types import event_types

        if spec.trigger == "purchase":
            return
        if event_types.get(session, programme.id, spec.trigger) is None:
            raise UnknownTrigger(
                f"no event type {spec.trigger!r} in programme {programme.slug!r}: use "
                "'purchase', a built-in engagement type or define it (POST /v1/event-types)",
                errors=[{"field": "trigger", "message": f"unknown event type {spec.trigger!r}"}],
            )

    def _lock_rule(self, session: Session, rule: Rule) -> None:
        session.refresh(rule, with_for_update=True)

    def _audit(
        self, session: Session, rule: Rule, actor: str, action: str, data: dict[str, Any]
    ) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="rule",
            subject_id=str(rule.id),
            programme_id=rule.programme_id,
            data=data,
        )


rules = RuleService()


# --- limits ---------------------------------------------------------------------------


def period_keys(local_date: Any, per: str) -> str:
    """The counter period of ``local_date`` (a date in the programme's time zone)."""
    if per == "day":
        return f"day:{local_date.isoformat()}"
    if per == "week":
        year, week, _ = local_date.isocalendar()
        return f"week:{year}-W{week:02d}"
    if per == "month":
        return f"month:{local_date.year}-{local_date.month:02d}"
    return "lifetime"


_USAGE = Query(
    lambda among: select(
        RuleUsage.rule_id, RuleUsage.member_id, RuleUsage.period, RuleUsage.count, RuleUsage.points
    ).where(
        among(RuleUsage.rule_id, "rules"),
        among(RuleUsage.member_id, "members"),
        among(RuleUsage.period, "periods"),
    )
)
BUDGET_SEEN_SECONDS = 1.0


class _BudgetsSeen:
    """The last ``budget_used`` this process read or wrote per rule, for optimistic units
    to start from without a query. A budget only grows, so a figure from a second ago is
    at most too low: the guarded addition (``Usage.settle``) then still refuses to
    overspend, and near the end the unit goes again with the row locked."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def fresh(self, rule_ids: Iterable[str]) -> dict[str, int]:
        now = time.monotonic()
        found = {}
        for rid in rule_ids:
            seen = self._seen.get(rid)
            if seen is not None and now - seen[1] < BUDGET_SEEN_SECONDS:
                found[rid] = seen[0]
        return found

    def saw(self, rule_id: str, used: int) -> None:
        seen = self._seen.get(rule_id)
        if seen is None or used >= seen[0]:
            self._seen[rule_id] = (used, time.monotonic())


_budgets_seen = _BudgetsSeen()


@dataclass
class _Counter:
    count: int = 0
    points: int = 0
    stored: bool = False
    dirty: bool = False


@dataclass
class Usage:
    """The limit counters of one unit of work: loaded once for the members and rules at
    hand, consulted by the engine (``view``), advanced by ``record`` and written by
    ``flush``. Per-member counters are safe because the member's account is locked.

    Budgets are what every event drawing on them must change, so they are the hot rows
    of a campaign; each is kept in several slots (``treu.rules.budgets``). Locked
    (``load(lock_budgets=True)``), a rule's slots are held from the start of the unit of
    work to its commit, and the unit writes them back with the allowances shared out
    anew. ``optimistic`` units read the total without a lock instead (or take what this
    process saw of it in the last second, ``_BudgetsSeen``) and add what they gave to one
    slot, guarded by its allowance (``budgets.add``, sent with the unit's other writes:
    in the same statement on PostgreSQL, no round trip of its own): that row is held from
    there to the commit only, and other purchases use other slots. Budgets only grow, so
    a total read without the lock is never above the truth; a unit whose awards the
    budget capped or stopped (it reached the edge on that figure: ``flush``) or whose
    slot had no room (``settle``) raises ``BudgetRace``, and the caller processes it
    again with the slots locked. The budget still stops exactly when spent."""

    session: Session
    specs: dict[str, RuleSpec]
    counters: dict[tuple[str, uuid.UUID, str], _Counter] = field(default_factory=dict)
    budget_used: dict[str, int] = field(default_factory=dict)
    budget_dirty: set[str] = field(default_factory=set)
    optimistic: bool = False
    budget_read: dict[str, int] = field(default_factory=dict)
    """What ``load`` read of each budget (optimistic units: without a lock)."""
    budget_adds: list[tuple[str, int]] = field(default_factory=list)
    """Optimistic units: each budget's guarded addition in the batch (rule id, index)."""
    budget_slots: dict[str, list[budgets.Slot]] = field(default_factory=dict)
    """Locked units: each budget's slots as locked."""
    budget_given: dict[tuple[str, int], int] = field(default_factory=dict)
    """Optimistic units: what they gave per budget and slot (each member's own)."""

    def load(
        self,
        members_dates: Iterable[tuple[uuid.UUID, Any]],
        *,
        lock_budgets: bool = True,
        locked: dict[str, list[budgets.Slot]] | None = None,
    ) -> None:
        """``locked``: the budgets' slots the caller locked for several programmes at
        once (``budgets.lock`` in rule order, so that two units never wait for each
        other); else a locked unit locks its own."""
        pairs = list(members_dates)
        limited = [rid for rid, spec in self.specs.items() if spec.limits]
        if pairs and limited:
            periods = {
                period_keys(day, limit.per)
                for _, day in pairs
                for rid in limited
                for limit in self.specs[rid].limits
            }
            connection = self.session.connection()
            for rule_id, member_id, period, count, points in _USAGE.rows(
                connection,
                rules=[uuid.UUID(r) for r in limited],
                members=sorted({m for m, _ in pairs}),
                periods=sorted(periods),
            ):
                self.counters[(str(rule_id), member_id, period)] = _Counter(
                    count, points, stored=True
                )
        budgeted = self.budgeted()
        if budgeted and pairs:
            if self.optimistic:
                known = _budgets_seen.fresh(budgeted)
                self.budget_used.update(known)
                self.budget_read.update(known)
                budgeted = [rid for rid in budgeted if rid not in known]
            if budgeted:
                connection = self.session.connection()
                if lock_budgets and not self.optimistic:
                    self.budget_slots = (
                        {rid: locked[rid] for rid in budgeted}
                        if locked is not None
                        else budgets.lock(connection, budgeted)
                    )
                    for rid, cap in budgets.published_caps(connection, budgeted).items():
                        spec = self.specs[rid]
                        if cap is not None and spec.budget_points is not None:
                            if cap < spec.budget_points:  # lowered since this process read it
                                self.specs[rid] = spec.model_copy(update={"budget_points": cap})
                    found = {
                        rid: budgets.used_of(slots) for rid, slots in self.budget_slots.items()
                    }
                else:
                    found = budgets.totals(connection, budgeted)
                for rule_id, used in found.items():
                    self.budget_used[rule_id] = used
                    self.budget_read[rule_id] = used
                    _budgets_seen.saw(rule_id, used)

    def budgeted(self) -> list[str]:
        """The rules with a budget, in id order (the order their slots are locked in)."""
        return sorted(rid for rid, spec in self.specs.items() if spec.budget_points is not None)

    def view(self, member_id: uuid.UUID | None, local_date: Any) -> _LimitView:
        return _LimitView(self, member_id, local_date)

    def record(self, member_id: uuid.UUID, local_date: Any, rule_id: str, points: int) -> None:
        spec = self.specs.get(rule_id)
        if spec is None:
            return
        for limit in spec.limits:
            key = (rule_id, member_id, period_keys(local_date, limit.per))
            counter = self.counters.setdefault(key, _Counter())
            counter.count += 1
            counter.points += points
            counter.dirty = True
        if spec.budget_points is not None:
            self.budget_used[rule_id] = self.budget_used.get(rule_id, 0) + points
            self.budget_dirty.add(rule_id)
            slot = (rule_id, budgets.slot_of(member_id))
            self.budget_given[slot] = self.budget_given.get(slot, 0) + points

    def flush(self, batch: WriteBatch) -> None:
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for (rule_id, member_id, period), counter in self.counters.items():
            if not counter.dirty:
                continue
            row = {"count": counter.count, "points": counter.points}
            key = {"rule_id": uuid.UUID(rule_id), "member_id": member_id, "period": period}
            if counter.stored:
                updates.append(row | key)
            else:
                inserts.append(key | row)
            counter.stored, counter.dirty = True, False
        batch.insert(table_of(RuleUsage), inserts)
        batch.update(table_of(RuleUsage), updates, key=("rule_id", "member_id", "period"))
        if self.optimistic:
            self._add_budgets(batch)
            return
        for rid in sorted(self.budget_dirty):
            given = self.budget_used[rid] - self.budget_read.get(rid, 0)
            slots = self.budget_slots.get(rid)
            if slots is None:
                raise RuntimeError(f"rule {rid}: budget written without its slots locked")
            budgets.write(
                batch,
                budgets.rebalanced(rid, slots, given=given, cap=self.specs[rid].budget_points),
            )
        self.budget_dirty.clear()

    def _add_budgets(self, batch: WriteBatch) -> None:
        """Optimistic units: what this unit gave to each budget, added by the batch after
        its other writes, guarded (``BudgetRace`` at once for a budget at its edge)."""
        for rid in sorted(self.budget_dirty):
            cap = self.specs[rid].budget_points
            read = self.budget_read.get(rid, 0)
            given = self.budget_used[rid] - read
            if cap is None or given <= 0:
                continue
            if read + given >= cap:
                raise BudgetRace(f"rule {rid}: the budget is at its edge")
        # Each member's points to the member's slot, in (rule, slot) order: the order the
        # batch sends them in, and the locked path locks them in.
        for (rid, slot), given in sorted(self.budget_given.items()):
            cap = self.specs[rid].budget_points
            if cap is None or given <= 0:
                continue
            index = budgets.add(batch, rid, slot=slot, given=given, cap=cap)
            self.budget_adds.append((rid, index))
        self.budget_dirty.clear()
        self.budget_given.clear()

    def settle(self, added: Sequence[int | None]) -> None:
        """After the batch's flush (``added``: what it returned): ``BudgetRace`` when a
        budget's slot had no room left (or its allowances were shared out for another
        budget), so that the unit is rolled back."""
        adds, self.budget_adds = self.budget_adds, []
        for rid, index in adds:
            if added[index] is None:
                raise BudgetRace(f"rule {rid}: no room left in a budget slot")
            _budgets_seen.saw(rid, self.budget_used[rid])  # at least this much now


@dataclass
class _LimitView:
    usage: Usage
    member_id: uuid.UUID | None
    local_date: Any

    def headroom(self, rule_id: str) -> Headroom:
        spec = self.usage.specs.get(rule_id)
        if spec is None:
            return Headroom(None, None)
        awards: int | None = None
        points: int | None = None
        awards_by: str | None = None
        points_by: str | None = None
        if self.member_id is not None:
            for limit in spec.limits:
                counter = self.usage.counters.get(
                    (rule_id, self.member_id, period_keys(self.local_date, limit.per))
                )
                used_count = counter.count if counter else 0
                used_points = counter.points if counter else 0
                if limit.max_count is not None:
                    left = limit.max_count - used_count
                    if awards is None or left < awards:
                        awards, awards_by = left, f"limit_{limit.per}"
                if limit.max_points is not None:
                    left = limit.max_points - used_points
                    if points is None or left < points:
                        points, points_by = left, f"limit_{limit.per}"
        if spec.budget_points is not None:
            left = spec.budget_points - self.usage.budget_used.get(rule_id, 0)
            if points is None or left < points:
                points, points_by = left, "budget"
        return Headroom(awards, points, awards_by, points_by)
