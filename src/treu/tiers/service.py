"""Tiers: definitions, qualification at ingestion, re-evaluation, paid membership.

How the pieces fit:

* ``TierService.ladder`` gives a programme's tiers, compiled once per
  ``programmes.tiers_version`` (bumped by every change to tiers or tier settings). The
  programme row the caller holds is usually the cached one, so a programme without tiers
  (version 0) costs no query at all, and one with tiers costs none after the first.
* ``TierBook`` is the tiers part of one ingestion unit of work. ``want`` names the
  members at hand, ``load`` reads their tier state and qualifying activity in ONE query
  (after the caller locked their accounts, so nothing changes underneath), ``record``
  adds an event's activity and upgrades at once — a later event of the same batch sees
  the new tier — and ``flush`` adds every write to the unit of work's ``WriteBatch``.
* Downgrades happen only in ``reevaluate`` (the daily job ``tiers.reevaluate``): after
  the grace period, at most ``tier_max_drop`` tiers at a time. Members are picked by
  ``review_on``, the day something can change for them, so the job reads only those.
* A bought tier (``membership_purchased``) holds until ``paid_until`` whatever the
  activity; the member's tier is the higher of the bought and the qualified one.

Every change of a member's tier is a ``tier_history`` row with a reason.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, bindparam, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.db.base import WriteBatch, lookup, table_of
from treu.kit.ids import new_id
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import add_months as add_months_at
from treu.kit.time import iso, local_date, utc_now
from treu.ledger.models import Account
from treu.members.models import Member
from treu.outbox.events import TierChanged
from treu.outbox.service import outbox
from treu.programmes.models import Programme, TierMetric, TierWindow
from treu.programmes.schemas import TierSettingsPatch
from treu.programmes.service import programmes
from treu.tiers import maths
from treu.tiers.errors import (
    MembershipDowngrade,
    TierExists,
    TierNotFound,
    TierNotPurchasable,
    TierOrder,
    UnknownTier,
)
from treu.tiers.maths import DayActivity, Ladder, TierDef
from treu.tiers.models import MemberTier, Tier, TierActivity, TierHistory
from treu.tiers.schemas import (
    BenefitsOut,
    MemberTierOut,
    MissingOut,
    TierCreate,
    TierOut,
    TierPatch,
    TierRef,
    dump_localized,
)
from treu.tiers.texts import history_text, missing_text, quantity

EMPTY = Ladder(())
RULE_PREFIX = "tier."
"""Earning rules ``tier.<code>`` are the tiers' multipliers (``treu.rules.service``)."""
MEMBERSHIP_EVENT = "membership_purchased"


@dataclass(frozen=True)
class TierInfo:
    """A member's tier as other features see it (rewards: exclusive access by rank)."""

    code: str
    rank: int
    name: Mapping[str, str]
    flags: tuple[str, ...]
    multiplier: Decimal
    paid: bool

    def label(self, lang: str = "en") -> str:
        return str(self.name.get(lang) or self.name.get("en") or self.code)


def tier_award_details(
    rule_id: str, version: int, factor: Decimal, points: int, ladder: Ladder
) -> dict[str, Any]:
    """What a tier multiplier's posting stores (names, not the member)."""
    code = rule_id.removeprefix(RULE_PREFIX)
    tier = ladder.get(code)
    return {
        "template": "tiers.multiplier",
        "params": {
            "tier": dict(tier.name) if tier else {"en": code},
            "code": code,
            "factor": str(factor),
            "points": points,
        },
        "rule_id": rule_id,
        "rule_version": version,
    }


# --------------------------------------------------------------------------- state


@dataclass
class _State:
    member_id: uuid.UUID
    programme_id: uuid.UUID
    tier: str | None
    since: datetime | None
    """None until a new state's first event sets it."""
    qualified_tier: str | None
    valid_until: date | None = None
    paid_tier: str | None = None
    paid_until: datetime | None = None
    grace_started_on: date | None = None
    review_on: date | None = None

    def paid_active(self, at: datetime) -> str | None:
        if self.paid_tier is not None and self.paid_until is not None and self.paid_until > at:
            return self.paid_tier
        return None

    def key(self) -> tuple[Any, ...]:
        return (
            self.tier,
            self.since,
            self.qualified_tier,
            self.valid_until,
            self.paid_tier,
            self.paid_until,
            self.grace_started_on,
            self.review_on,
        )

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "programme_id": self.programme_id,
            "tier": self.tier,
            "since": self.since or now,
            "qualified_tier": self.qualified_tier,
            "valid_until": self.valid_until,
            "paid_tier": self.paid_tier,
            "paid_until": self.paid_until,
            "grace_started_on": self.grace_started_on,
            "review_on": self.review_on,
            "updated_at": now,
        }


_STATE_COLUMNS = (
    MemberTier.member_id,
    MemberTier.programme_id,
    MemberTier.tier,
    MemberTier.since,
    MemberTier.qualified_tier,
    MemberTier.valid_until,
    MemberTier.paid_tier,
    MemberTier.paid_until,
    MemberTier.grace_started_on,
    MemberTier.review_on,
)


def _load_statement(dialect: str) -> Any:
    """The members' states, each with its activity from ``start`` on as one JSON array
    (a correlated aggregate, so a member's state columns are read and converted once,
    not once per day: a batch of 1,000 events reads ~15,000 activity days)."""
    if dialect == "postgresql":
        days = func.json_agg(
            func.json_build_array(
                TierActivity.day,
                TierActivity.points,
                TierActivity.spend_minor,
                TierActivity.purchases,
            )
        )
    else:
        days = func.json_group_array(
            func.json_array(
                TierActivity.day,
                TierActivity.points,
                TierActivity.spend_minor,
                TierActivity.purchases,
            )
        )
    activity = (
        select(days)
        .where(
            TierActivity.member_id == MemberTier.member_id,
            TierActivity.day >= bindparam("start", type_=Date()),
        )
        .scalar_subquery()
    )
    return lookup(
        lambda condition: select(*_STATE_COLUMNS, activity.label("activity")).where(condition),
        MemberTier.member_id,
    )


_LOAD = {dialect: _load_statement(dialect) for dialect in ("postgresql", "sqlite")}
"""ONE statement per unit of work (a member with activity always has a state row: both
are first written together)."""


def _days(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(json.loads(value) if isinstance(value, str) else value)


@dataclass
class _Tracked:
    programme: Programme
    ladder: Ladder
    state: _State
    loaded_from: date
    stored: bool
    activity: dict[date, DayActivity] = field(default_factory=dict)
    stored_days: set[date] = field(default_factory=set)
    dirty_days: set[date] = field(default_factory=set)
    dirty: bool = False
    written: tuple[Any, ...] | None = None
    """The state as stored: an unchanged state is not written again (a Bronze member's
    purchase writes its day's activity only)."""

    def add(self, day: date, delta: DayActivity) -> None:
        before = self.activity.get(day, DayActivity())
        after = before.plus(delta)
        self.activity[day] = DayActivity(
            max(after.points, 0), max(after.spend_minor, 0), max(after.purchases, 0)
        )
        self.dirty_days.add(day)
        self.dirty = True


def _names(ladder: Ladder, code: str | None) -> dict[str, str] | None:
    tier = ladder.get(code)
    return dict(tier.name) if tier is not None else None


class TierBook:
    """The tiers part of one unit of work (see the module docstring)."""

    def __init__(self, session: Session, *, now: datetime | None = None) -> None:
        self.session = session
        self.now = now or utc_now()
        self._wanted: dict[uuid.UUID, tuple[Programme, Ladder, list[date]]] = {}
        self._members: dict[uuid.UUID, _Tracked] = {}
        self._history: list[dict[str, Any]] = []

    # --- loading ----------------------------------------------------------------------

    def want(self, programme: Programme, member_id: uuid.UUID, day: date | None = None) -> None:
        """Track ``member_id`` (a no-op, without a query, for a programme with no tiers)."""
        if not programme.tiers_version:
            return
        ladder = tiers.ladder(self.session, programme)
        if not ladder:
            return
        entry = self._wanted.get(member_id)
        if entry is None:
            entry = self._wanted[member_id] = (programme, ladder, [])
        entry[2].append(day or local_date(self.now, programme.timezone))

    def load(self) -> None:
        wanted = {m: w for m, w in self._wanted.items() if m not in self._members}
        self._wanted = {}
        if not wanted:
            return
        starts: dict[uuid.UUID, date] = {}
        for member_id, (programme, _ladder, days) in wanted.items():
            today = local_date(self.now, programme.timezone)
            starts[member_id] = maths.load_from([*days, today], programme.tier_window)
        start = min(starts.values())
        connection = self.session.connection()
        statement, params = _LOAD[connection.dialect.name].bind(sorted(wanted), start=start)
        for row in connection.execute(statement, params).all():
            programme, ladder, _wanted_days = wanted[row.member_id]
            tracked = self._members[row.member_id] = _Tracked(
                programme,
                ladder,
                _State(
                    row.member_id,
                    row.programme_id,
                    row.tier,
                    row.since,
                    row.qualified_tier,
                    row.valid_until,
                    row.paid_tier,
                    row.paid_until,
                    row.grace_started_on,
                    row.review_on,
                ),
                loaded_from=start,
                stored=True,
            )
            tracked.written = tracked.state.key()
            for day, points, spend, purchases in _days(row.activity):
                if day is None:
                    continue
                when = date.fromisoformat(str(day)[:10])
                tracked.activity[when] = DayActivity(int(points), int(spend), int(purchases))
                tracked.stored_days.add(when)
        for member_id, (programme, ladder, _day_list) in wanted.items():
            known = self._members.get(member_id)
            if known is None:
                base = ladder.base.code if ladder.base is not None else None
                self._members[member_id] = _Tracked(
                    programme,
                    ladder,
                    _State(member_id, programme.id, base, None, base),
                    loaded_from=start,
                    stored=False,
                )
            else:
                self._expire_paid(known)

    # --- reading ----------------------------------------------------------------------

    def tier_of(self, member_id: uuid.UUID) -> str | None:
        """The member's tier for earning-rule conditions (``member.tier``)."""
        tracked = self._members.get(member_id)
        return tracked.state.tier if tracked is not None else None

    def tracks(self, member_id: uuid.UUID) -> bool:
        return member_id in self._members

    def multiplier_of(self, member_id: uuid.UUID) -> Decimal | None:
        tracked = self._members.get(member_id)
        if tracked is None:
            return None
        tier = tracked.ladder.get(tracked.state.tier)
        return tier.multiplier if tier is not None else None

    # --- activity ---------------------------------------------------------------------

    def record(
        self,
        member_id: uuid.UUID,
        at: datetime,
        *,
        points: int = 0,
        spend_minor: int = 0,
        purchases: int = 0,
        event_id: uuid.UUID | None = None,
    ) -> dict[str, Any] | None:
        """Count a purchase's or an engagement event's activity on its day and upgrade
        at once if a threshold is crossed. Returns the change (for the event's result)."""
        tracked = self._members.get(member_id)
        if tracked is None or not (points or spend_minor or purchases):
            return None  # nothing counts (an engagement event that earned nothing)
        programme = tracked.programme
        day = local_date(at, programme.timezone)
        tracked.add(day, DayActivity(points, spend_minor, purchases))
        state = tracked.state
        if state.since is None:
            state.since = at
        ladder = tracked.ladder
        reached = maths.qualified(
            ladder, tracked.activity, programme.tier_metric, programme.tier_window, day
        )
        code = reached.code if reached is not None else None
        if ladder.rank(code) < ladder.rank(state.qualified_tier):
            return None
        state.grace_started_on = None
        if ladder.rank(code) == ladder.rank(state.qualified_tier):
            return None
        previous = state.qualified_tier
        state.qualified_tier = code
        value = maths.value_on(tracked.activity, programme.tier_metric, programme.tier_window, day)
        params = self._params(tracked, value=value, threshold=reached.threshold if reached else 0)
        params["from"] = _names(ladder, previous)
        return self._set_tier(tracked, _later(at, state.since), "qualified", params, event_id)

    def record_return(
        self,
        member_id: uuid.UUID,
        purchased_at: datetime,
        *,
        points: int,
        spend_minor: int,
        purchases: int,
    ) -> None:
        """Take back what a returned purchase counted (on the purchase's day). Never a
        downgrade by itself: that waits for the re-evaluation and its grace period."""
        tracked = self._members.get(member_id)
        if tracked is None:
            return
        day = local_date(purchased_at, tracked.programme.timezone)
        if day < tracked.loaded_from:
            return  # older than any window that can still count
        tracked.add(day, DayActivity(-points, -spend_minor, -purchases))

    # --- paid membership --------------------------------------------------------------

    def check_buy(self, member_id: uuid.UUID, code: str, at: datetime) -> None:
        tracked = self._members.get(member_id)
        if tracked is None:
            raise UnknownTier(f"no tier {code!r} in this programme")
        tiers.purchasable(tracked.ladder, code)
        state = tracked.state
        paid = state.paid_active(max(at, self.now))
        if paid is not None and tracked.ladder.rank(paid) > tracked.ladder.rank(code):
            until = state.paid_until.date().isoformat() if state.paid_until else "?"
            raise MembershipDowngrade(
                f"a paid membership of tier {paid!r} runs until {until}; buy {paid!r} to extend it",
                paid_tier=paid,
            )

    def buy(
        self,
        member_id: uuid.UUID,
        code: str,
        months: int,
        at: datetime,
        *,
        event_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """A bought tier for ``months`` from the event's time; buying the running tier
        again extends it from its current end. Call ``check_buy`` first."""
        tracked = self._members[member_id]
        state = tracked.state
        renew = state.paid_tier == code and state.paid_until is not None and state.paid_until > at
        start = state.paid_until if renew and state.paid_until is not None else at
        until = add_months_at(start, months)
        state.paid_tier, state.paid_until = code, until
        tracked.dirty = True
        params = self._params(tracked)
        params.update(
            months=months,
            until=local_date(until, tracked.programme.timezone).isoformat(),
            paid=code,
        )
        reason = "membership_renewed" if renew else "membership_purchased"
        # The tier as the purchase made it, at the purchase's time: a purchase that
        # arrives after its period is over is still recorded as what was bought, and its
        # end follows in the history (the answer then reports the end: the tier now).
        bought = tracked.ladder.higher(state.qualified_tier, state.paid_active(at))
        change = self._change(tracked, bought, _later(at, state.since), reason, params, event_id)
        if until > self.now:
            return change
        return self._expire_paid(tracked) or change

    def _expire_paid(self, tracked: _Tracked) -> dict[str, Any] | None:
        """End a bought tier whose period is over; the change when the tier changed."""
        state = tracked.state
        if state.paid_tier is None or state.paid_until is None or state.paid_until > self.now:
            return None
        params = self._params(tracked)
        params.update(
            until=local_date(state.paid_until, tracked.programme.timezone).isoformat(),
            paid=state.paid_tier,
            **{"from": _names(tracked.ladder, state.tier)},
        )
        ended = state.paid_until
        state.paid_tier, state.paid_until = None, None
        tracked.dirty = True
        new = tracked.ladder.higher(state.qualified_tier, None)
        if new == state.tier:
            return None
        return self._set_tier(
            tracked, _later(ended, state.since), "membership_expired", params, None
        )

    # --- re-evaluation ----------------------------------------------------------------

    def reevaluate(self, member_id: uuid.UUID) -> dict[str, Any] | None:
        """The daily look at one member: upgrades missed (thresholds lowered), the grace
        period, and downgrades of at most ``tier_max_drop`` tiers."""
        tracked = self._members[member_id]
        programme = tracked.programme
        ladder = tracked.ladder
        state = tracked.state
        today = local_date(self.now, programme.timezone)
        metric, window = programme.tier_metric, programme.tier_window
        tracked.dirty = True
        reached = maths.qualified(ladder, tracked.activity, metric, window, today)
        code = reached.code if reached is not None else None
        held = state.qualified_tier
        value = maths.value_on(tracked.activity, metric, window, today)
        if ladder.rank(code) >= ladder.rank(held):
            state.grace_started_on = None
            if ladder.rank(code) == ladder.rank(held):
                return None
            state.qualified_tier = code
            params = self._params(
                tracked, value=value, threshold=reached.threshold if reached else 0
            )
            params["from"] = _names(ladder, held)
            return self._set_tier(tracked, self.now, "qualified", params, None)
        if state.grace_started_on is None:
            state.grace_started_on = today
        if today < state.grace_started_on + timedelta(days=programme.tier_grace_days):
            return None
        lower = ladder.higher(code, ladder.down(held, programme.tier_max_drop))
        state.qualified_tier = lower
        # Still short of the lower tier: its own grace period starts tomorrow, so a run
        # twice a day never drops twice (and grace_days = 0 drops one tier a day).
        state.grace_started_on = (
            None if ladder.rank(code) >= ladder.rank(lower) else today + timedelta(days=1)
        )
        held_tier = ladder.get(held)
        params = self._params(
            tracked, value=value, threshold=held_tier.threshold if held_tier else 0
        )
        params["from"] = _names(ladder, held)
        return self._set_tier(tracked, self.now, "requalification_failed", params, None)

    # --- changes ----------------------------------------------------------------------

    def _params(self, tracked: _Tracked, **values: Any) -> dict[str, Any]:
        programme = tracked.programme
        params: dict[str, Any] = {
            "metric": programme.tier_metric,
            "window": programme.tier_window,
            "currency": programme.currency,
            "points_name": programme.points_name,
        }
        params.update(values)
        return params

    def _set_tier(
        self,
        tracked: _Tracked,
        at: datetime,
        reason: str,
        params: dict[str, Any],
        event_id: uuid.UUID | None,
    ) -> dict[str, Any] | None:
        """Move the member to the higher of the qualified and a running bought tier, and
        write history if that changed."""
        state = tracked.state
        new = tracked.ladder.higher(state.qualified_tier, state.paid_active(max(at, self.now)))
        if new == state.tier:
            tracked.dirty = True
            return None
        return self._change(tracked, new, at, reason, params, event_id)

    def _change(
        self,
        tracked: _Tracked,
        new: str | None,
        at: datetime,
        reason: str,
        params: dict[str, Any],
        event_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        state = tracked.state
        ladder = tracked.ladder
        previous = state.tier
        params = dict(params)
        params.setdefault("from", _names(ladder, previous))
        params["to"] = _names(ladder, new)
        text = history_text(reason, params, "en")
        self._history.append(
            {
                "id": new_id(),
                "member_id": state.member_id,
                "programme_id": state.programme_id,
                "from_tier": previous,
                "to_tier": new,
                "reason": reason,
                "text": text[:500],
                "details": {"template": reason, "params": params},
                "event_id": event_id,
                "at": at,
            }
        )
        if new != previous:
            state.tier = new
            state.since = at
        tracked.dirty = True
        tier = ladder.get(new)
        return {
            "from": previous,
            "to": new,
            "rank": tier.rank if tier is not None else None,
            "name": dict(tier.name) if tier is not None else None,
            "flags": list(tier.flags) if tier is not None else [],
            "reason": reason,
            "text": text,
            "since": iso(state.since),
            **({"paid_until": iso(state.paid_until)} if state.paid_until else {}),
        }

    # --- writing ----------------------------------------------------------------------

    def flush(self, batch: WriteBatch) -> None:
        state_inserts: list[dict[str, Any]] = []
        state_updates: list[dict[str, Any]] = []
        day_inserts: list[dict[str, Any]] = []
        day_updates: list[dict[str, Any]] = []
        for tracked in self._members.values():
            if not tracked.dirty:
                continue
            self._schedule(tracked)
            if not tracked.stored:
                state_inserts.append(tracked.state.row(self.now))
            elif tracked.state.key() != tracked.written:
                state_updates.append(tracked.state.row(self.now))
            tracked.stored, tracked.written = True, tracked.state.key()
            for day in sorted(tracked.dirty_days):
                values = tracked.activity[day]
                day_row = {
                    "member_id": tracked.state.member_id,
                    "day": day,
                    "points": values.points,
                    "spend_minor": values.spend_minor,
                    "purchases": values.purchases,
                }
                if day in tracked.stored_days:
                    day_updates.append(day_row)
                else:
                    day_inserts.append(day_row)
                    tracked.stored_days.add(day)
            tracked.dirty_days.clear()
            tracked.dirty = False
        batch.insert(table_of(MemberTier), state_inserts)
        batch.update(table_of(MemberTier), state_updates, key="member_id")
        batch.insert(table_of(TierActivity), day_inserts)
        batch.update(table_of(TierActivity), day_updates, key=("member_id", "day"))
        batch.insert(table_of(TierHistory), self._history)
        outbox.add_to(
            batch,
            (
                TierChanged(
                    programme_id=row["programme_id"],
                    member_id=row["member_id"],
                    occurred_at=row["at"],
                    from_tier=row["from_tier"],
                    to_tier=row["to_tier"],
                    reason=row["reason"],
                    event_id=row["event_id"],
                )
                for row in self._history
                if row["from_tier"] != row["to_tier"]
            ),
            now=self.now,
        )
        self._history = []

    def _schedule(self, tracked: _Tracked) -> None:
        """``valid_until`` of the qualified tier and ``review_on``: the first day the
        daily job can change something (end of validity or grace, a bought tier ending)."""
        programme = tracked.programme
        state = tracked.state
        today = local_date(self.now, programme.timezone)
        held = tracked.ladder.get(state.qualified_tier)
        candidates: list[date] = []
        state.valid_until = None
        if held is not None and held.threshold > 0:
            until = maths.valid_until(
                held, tracked.activity, programme.tier_metric, programme.tier_window, today
            )
            state.valid_until = until
            if state.grace_started_on is not None:
                candidates.append(
                    state.grace_started_on + timedelta(days=programme.tier_grace_days)
                )
            else:
                candidates.append(until + maths.ONE_DAY if until is not None else today)
        if state.paid_until is not None:
            candidates.append(local_date(state.paid_until, programme.timezone))
        state.review_on = min(candidates) if candidates else None


def _later(at: datetime, since: datetime | None) -> datetime:
    return at if since is None or at > since else since


# --------------------------------------------------------------------------- service


class TierService:
    def __init__(self) -> None:
        self._ladders: dict[tuple[uuid.UUID, int], Ladder] = {}
        self._lock = threading.Lock()

    # --- definitions ------------------------------------------------------------------

    def ladder(self, session: Session, programme: Programme) -> Ladder:
        """The programme's tiers (cached per ``tiers_version``; no query for version 0)."""
        version = programme.tiers_version
        if not version:
            return EMPTY
        key = (programme.id, version)
        found = self._ladders.get(key)
        if found is not None:
            return found
        rows = session.scalars(select(Tier).where(Tier.programme_id == programme.id)).all()
        ladder = Ladder(tuple(_definition(row) for row in rows))
        with self._lock:
            if len(self._ladders) > 1024:
                self._ladders.clear()
            self._ladders[key] = ladder
        return ladder

    def known_ladder(self, programme: Programme) -> Ladder:
        """The cached tiers, without a session: for explaining awards that were computed
        from them (``ladder`` ran for this version before, or there is nothing to name)."""
        if not programme.tiers_version:
            return EMPTY
        return self._ladders.get((programme.id, programme.tiers_version), EMPTY)

    def ladder_of(self, session: Session, programme_id: uuid.UUID) -> Ladder:
        programme = session.get(Programme, programme_id)
        return self.ladder(session, programme) if programme is not None else EMPTY

    def rank_of(self, session: Session, programme_id: uuid.UUID, code: str) -> int | None:
        """The rank of tier ``code`` (None: no such tier), e.g. for a reward that needs
        "Silber or higher"."""
        tier = self.ladder_of(session, programme_id).get(code)
        return tier.rank if tier is not None else None

    def purchasable(self, ladder: Ladder, code: str) -> TierDef:
        tier = ladder.get(code)
        if tier is None:
            raise UnknownTier(
                f"no tier {code!r} in this programme",
                errors=[{"field": "attributes.tier", "message": f"unknown tier {code!r}"}],
            )
        if not tier.purchasable:
            raise TierNotPurchasable(
                f"tier {code!r} cannot be bought",
                errors=[{"field": "attributes.tier", "message": "not purchasable"}],
            )
        return tier

    def check_membership_event(
        self, session: Session, programme: Programme, attributes: Mapping[str, Any]
    ) -> None:
        """Before any member is looked at: the tier exists and can be bought."""
        self.purchasable(self.ladder(session, programme), str(attributes.get("tier", "")))

    def book(self, session: Session, *, now: datetime | None = None) -> TierBook:
        return TierBook(session, now=now)

    # --- admin ------------------------------------------------------------------------

    def all(self, session: Session, programme: Programme) -> list[Tier]:
        return list(
            session.scalars(
                select(Tier).where(Tier.programme_id == programme.id).order_by(Tier.rank)
            )
        )

    def out(self, tier: Tier) -> TierOut:
        return TierOut(
            code=tier.code,
            rank=tier.rank,
            name=dict(tier.name),
            description=dict(tier.description) if tier.description else None,
            threshold=tier.threshold,
            multiplier=tier.multiplier,
            flags=list(tier.flags),
            benefits=[dict(b) for b in tier.benefits],
            purchasable=tier.purchasable,
        )

    def create(
        self,
        session: Session,
        *,
        programme: Programme,
        data: TierCreate,
        actor: str,
        now: datetime | None = None,
    ) -> Tier:
        self._lock_programme(session, programme)
        existing = self.all(session, programme)
        if any(t.code == data.code for t in existing):
            raise TierExists(f"this programme has a tier {data.code!r} already", field="code")
        if any(t.rank == data.rank for t in existing):
            raise TierExists(f"tier {data.rank} is taken already", field="rank")
        tier = Tier(
            programme_id=programme.id,
            code=data.code,
            rank=data.rank,
            name=dump_localized(data.name),
            description=dump_localized(data.description),
            threshold=data.threshold,
            multiplier=data.multiplier,
            flags=list(data.flags),
            benefits=[dump_localized(b) for b in data.benefits],
            purchasable=data.purchasable,
        )
        _check_order([*existing, tier])
        session.add(tier)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent create won
            raise TierExists(f"tier {data.code!r} or rank {data.rank} exists already") from exc
        self._changed(session, programme, now=now)
        audit.record(
            session,
            actor=actor,
            action="tier.create",
            subject_type="tier",
            subject_id=str(tier.id),
            programme_id=programme.id,
            data=data.model_dump(mode="json"),
        )
        return tier

    def update(
        self,
        session: Session,
        *,
        programme: Programme,
        code: str,
        patch: TierPatch,
        actor: str,
        now: datetime | None = None,
    ) -> Tier:
        self._lock_programme(session, programme)
        existing = self.all(session, programme)
        tier = next((t for t in existing if t.code == code), None)
        if tier is None:
            raise TierNotFound(f"no tier {code!r} in programme {programme.slug!r}")
        changes = patch.model_dump(exclude_unset=True, mode="json")
        if patch.rank is not None and any(
            t.rank == patch.rank and t.code != code for t in existing
        ):
            raise TierExists(f"tier {patch.rank} is taken already", field="rank")
        for key in ("rank", "threshold", "multiplier", "purchasable"):
            value = getattr(patch, key)
            if value is not None:
                setattr(tier, key, value)
        if patch.name is not None:
            tier.name = dump_localized(patch.name) or {}
        if "description" in changes:
            tier.description = dump_localized(patch.description)
        if patch.flags is not None:
            tier.flags = list(patch.flags)
        if patch.benefits is not None:
            tier.benefits = [dump_localized(b) for b in patch.benefits]
        _check_order(existing)
        session.flush()
        self._changed(session, programme, now=now)
        audit.record(
            session,
            actor=actor,
            action="tier.update",
            subject_type="tier",
            subject_id=str(tier.id),
            programme_id=programme.id,
            data={"code": code, "changes": changes},
        )
        return tier

    def update_settings(
        self,
        session: Session,
        *,
        programme: Programme,
        patch: TierSettingsPatch,
        actor: str,
        now: datetime | None = None,
    ) -> Programme:
        self._lock_programme(session, programme)
        changes = patch.model_dump(exclude_unset=True, exclude_none=True, mode="json")
        if "metric" in changes:
            programme.tier_metric = changes["metric"]
        if "window" in changes:
            programme.tier_window = changes["window"]
        if "grace_days" in changes:
            programme.tier_grace_days = changes["grace_days"]
        if "max_drop" in changes:
            programme.tier_max_drop = changes["max_drop"]
        session.flush()
        if programme.tiers_version:
            self._changed(session, programme, now=now)
        else:
            programmes.invalidate(session, programme.slug)
        audit.record(
            session,
            actor=actor,
            action="tier.settings",
            subject_type="programme",
            subject_id=str(programme.id),
            programme_id=programme.id,
            data=changes,
        )
        return programme

    def _lock_programme(self, session: Session, programme: Programme) -> None:
        """Tier edits of one programme take turns (the order check reads all tiers)."""
        session.refresh(programme, with_for_update=True)

    def _changed(self, session: Session, programme: Programme, *, now: datetime | None) -> None:
        """New version (every process recompiles), and every member is looked at again
        by the next re-evaluation: a lowered threshold upgrades, a raised one starts grace."""
        programme.tiers_version = (programme.tiers_version or 0) + 1
        session.flush()
        today = local_date(now or utc_now(), programme.timezone)
        session.execute(
            update(MemberTier)
            .where(MemberTier.programme_id == programme.id)
            .values(review_on=today)
        )
        programmes.invalidate(session, programme.slug)

    # --- members ----------------------------------------------------------------------

    def current(
        self, session: Session, member_id: uuid.UUID, *, now: datetime | None = None
    ) -> TierInfo | None:
        """The member's tier now (None: the programme has no tiers, or the member holds
        none). A bought tier that ran out counts as ended even before the daily job."""
        now = now or utc_now()
        row = session.execute(
            select(Member.programme_id, MemberTier)
            .select_from(Member)
            .outerjoin(MemberTier, MemberTier.member_id == Member.id)
            .where(Member.id == member_id)
        ).one_or_none()
        if row is None:
            return None
        ladder = self.ladder_of(session, row[0])
        if not ladder:
            return None
        state: MemberTier | None = row[1]
        if state is None:
            base = ladder.base
            return _info(base, paid=False) if base is not None else None
        paid = state.paid_tier if state.paid_until is not None and state.paid_until > now else None
        code = ladder.higher(state.qualified_tier, paid)
        tier = ladder.get(code)
        if tier is None:
            return None
        return _info(tier, paid=paid is not None and paid == code and code != state.qualified_tier)

    def code_of(
        self, session: Session, programme: Programme, member_id: uuid.UUID, *, now: datetime
    ) -> TierInfo | None:
        """``current`` for a known programme: no query when it has no tiers (checkout)."""
        if not programme.tiers_version:
            return None
        return self.current(session, member_id, now=now)

    def status(
        self,
        session: Session,
        *,
        member: Member,
        lang: str = "en",
        now: datetime | None = None,
    ) -> MemberTierOut:
        """Everything ``GET /v1/members/{id}/tier`` shows."""
        now = now or utc_now()
        programme = session.get_one(Programme, member.programme_id)
        ladder = self.ladder(session, programme)
        metric = TierMetric(programme.tier_metric)
        window = TierWindow(programme.tier_window)
        today = local_date(now, programme.timezone)
        state = session.get(MemberTier, member.id)
        activity = self._activity(session, member.id, window, today)
        value = maths.value_on(activity, metric, window, today)
        empty = MemberTierOut(
            member_id=member.id,
            tier=None,
            since=None,
            valid_until=None,
            paid=False,
            paid_until=None,
            qualified_tier=None,
            grace_until=None,
            metric=metric.value,
            window=window.value,
            value=value,
            next=None,
            keep=None,
            benefits=None,
        )
        if not ladder:
            return empty
        if state is not None:
            paid = (
                state.paid_tier if state.paid_until is not None and state.paid_until > now else None
            )
            qualified_code = state.qualified_tier
            since: datetime | None = state.since
            grace = state.grace_started_on
        else:
            paid, grace = None, None
            qualified_code = ladder.base.code if ladder.base is not None else None
            since = member.enrolled_at
        code = ladder.higher(qualified_code, paid)
        tier = ladder.get(code)
        is_paid = (
            paid is not None and paid == code and ladder.rank(paid) > ladder.rank(qualified_code)
        )
        grace_until = (
            grace + timedelta(days=programme.tier_grace_days - 1)
            if grace is not None and programme.tier_grace_days > 0
            else grace
        )
        qualified_until = None
        held = ladder.get(qualified_code)
        if held is not None and held.threshold > 0:
            qualified_until = maths.valid_until(held, activity, metric, window, today)
        valid_until: date | None = None
        if tier is not None and tier.threshold > 0:
            ends = [d for d in (qualified_until, grace_until) if d is not None]
            if tier.code != qualified_code:
                ends = []
            if is_paid and state is not None and state.paid_until is not None:
                ends.append(local_date(state.paid_until, programme.timezone))
            valid_until = max(ends) if ends else None

        def missing(found: maths.Missing | None, *, keep: bool) -> MissingOut | None:
            if found is None:
                return None
            amount = quantity(
                metric.value,
                found.amount,
                currency=programme.currency,
                points_name=programme.points_name,
                lang=lang,
            )
            held_until = valid_until if keep and found.amount == 0 else None
            return MissingOut(
                tier=_ref(found.tier, lang),
                metric=metric.value,
                missing=found.amount,
                currency=programme.currency if metric is TierMetric.spend else None,
                deadline=found.deadline,
                text=missing_text(
                    amount=amount,
                    tier=found.tier.label(lang),
                    deadline=found.deadline,
                    keep=keep,
                    held_until=held_until,
                    lang=lang,
                ),
            )

        above = ladder.above(code)
        nxt = maths.to_reach(above, activity, metric, window, today) if above else None
        keep = None
        if tier is not None:
            end_of_hold = grace_until
            if is_paid and state is not None and state.paid_until is not None:
                end_of_hold = local_date(state.paid_until, programme.timezone)
            keep = maths.to_keep(tier, activity, metric, window, today, held_until=end_of_hold)
        return empty.model_copy(
            update={
                "tier": _ref(tier, lang) if tier is not None else None,
                "since": since if tier is not None else None,
                "valid_until": valid_until,
                "paid": is_paid,
                "paid_until": state.paid_until if state is not None and paid else None,
                "qualified_tier": _ref(held, lang) if held is not None else None,
                "grace_until": grace_until,
                "next": missing(nxt, keep=False),
                "keep": missing(keep, keep=True),
                "benefits": (
                    BenefitsOut(
                        multiplier=tier.multiplier,
                        flags=list(tier.flags),
                        benefits=[str(b.get(lang) or b.get("en") or "") for b in tier.benefits],
                    )
                    if tier is not None
                    else None
                ),
            }
        )

    def _activity(
        self, session: Session, member_id: uuid.UUID, window: TierWindow, today: date
    ) -> maths.Activity:
        """The member's counted activity that can matter for an evaluation on ``today``."""
        start = maths.load_from([today], window)
        return maths.activity_of(
            session.execute(
                select(
                    TierActivity.day,
                    TierActivity.points,
                    TierActivity.spend_minor,
                    TierActivity.purchases,
                ).where(TierActivity.member_id == member_id, TierActivity.day >= start)
            ).all()
        )

    def to_next(
        self,
        session: Session,
        programme: Programme,
        member_id: uuid.UUID,
        current: str | None,
        *,
        now: datetime,
    ) -> maths.Missing | None:
        """What the member still needs for the tier above ``current`` (their tier now),
        counted as ``status`` counts it; None at the top or without tiers (the checkout's
        hint: one query for the activity)."""
        ladder = self.ladder(session, programme)
        above = ladder.above(current) if ladder else None
        if above is None:
            return None
        window = TierWindow(programme.tier_window)
        today = local_date(now, programme.timezone)
        activity = self._activity(session, member_id, window, today)
        return maths.to_reach(above, activity, programme.tier_metric, window, today)

    def history(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        limit: int = 20,
        cursor: str | None = None,
        lang: str = "en",
    ) -> tuple[list[tuple[TierHistory, str]], str | None]:
        """Entries newest first with their text in ``lang``, and the next page's cursor
        (keyset: the last id). Raises ``InvalidCursor`` for a cursor it did not make."""
        query = (
            select(TierHistory)
            .where(TierHistory.member_id == member_id)
            .order_by(TierHistory.id.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            try:
                after = uuid.UUID(str(decode_cursor(cursor).get("id")))
            except ValueError as exc:
                raise InvalidCursor("cursor is not valid") from exc
            query = query.where(TierHistory.id < after)
        rows = list(session.scalars(query))
        items = [
            (
                entry,
                entry.text
                if lang == "en"
                else history_text(
                    str(entry.details.get("template", entry.reason)),
                    entry.details.get("params") or {},
                    lang,
                ),
            )
            for entry in rows[:limit]
        ]
        next_cursor = encode_cursor({"id": str(rows[limit - 1].id)}) if len(rows) > limit else None
        return items, next_cursor

    # --- re-evaluation ----------------------------------------------------------------

    def reevaluate_batch(
        self,
        session: Session,
        *,
        programme: Programme,
        now: datetime,
        after: tuple[date, uuid.UUID] | None = None,
        limit: int = 500,
    ) -> tuple[int, tuple[date, uuid.UUID] | None]:
        """Re-evaluate up to ``limit`` members due (``review_on`` today or earlier), in
        (review_on, member id) order after the cursor ``after``: an index range, however
        many are due. Returns how many, and the cursor for the next batch."""
        if not self.ladder(session, programme):
            return 0, None
        today = local_date(now, programme.timezone)
        query = (
            select(MemberTier.review_on, MemberTier.member_id)
            .where(MemberTier.programme_id == programme.id, MemberTier.review_on <= today)
            .order_by(MemberTier.review_on, MemberTier.member_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(MemberTier.review_on, MemberTier.member_id) > tuple_(*after))
        due = session.execute(query).all()
        if not due:
            return 0, None
        ids = sorted(member_id for _, member_id in due)
        # Ingestion's lock (the accounts, in member-id order): no event in between.
        session.execute(
            select(Account.member_id)
            .where(Account.member_id.in_(ids))
            .order_by(Account.member_id)
            .with_for_update()
        ).all()
        book = TierBook(session, now=now)
        for member_id in ids:
            book.want(programme, member_id, today)
        book.load()
        for member_id in ids:
            book.reevaluate(member_id)
        batch = WriteBatch()
        book.flush(batch)
        batch.flush(session.connection())
        last_day, last_id = due[-1]
        assert last_day is not None  # review_on <= today
        return len(ids), (last_day, last_id)

    def programmes_with_tiers(self, session: Session) -> list[Programme]:
        return list(
            session.scalars(
                select(Programme).where(Programme.tiers_version > 0).order_by(Programme.slug)
            )
        )


def _definition(row: Tier) -> TierDef:
    return TierDef(
        code=row.code,
        rank=row.rank,
        name=dict(row.name),
        threshold=row.threshold,
        multiplier=Decimal(row.multiplier),
        flags=tuple(row.flags),
        benefits=tuple(dict(b) for b in row.benefits),
        purchasable=row.purchasable,
        description=dict(row.description) if row.description else None,
    )


def _info(tier: TierDef, *, paid: bool) -> TierInfo:
    return TierInfo(tier.code, tier.rank, tier.name, tier.flags, tier.multiplier, paid)


def _ref(tier: TierDef, lang: str) -> TierRef:
    return TierRef(code=tier.code, rank=tier.rank, name=tier.label(lang))


def _check_order(rows: Iterable[Tier]) -> None:
    ordered = sorted(rows, key=lambda t: t.rank)
    for lower, higher in itertools.pairwise(ordered):
        if higher.threshold <= lower.threshold:
            raise TierOrder(
                f"tier {higher.code!r} (rank {higher.rank}) needs a higher threshold than "
                f"{lower.code!r} (rank {lower.rank}): {higher.threshold} <= {lower.threshold}",
                errors=[{"field": "threshold", "message": "must rise with the rank"}],
            )


tiers = TierService()
