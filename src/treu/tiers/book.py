"""The tiers part of one unit of work of ingestion or re-evaluation (``TierBook``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Date, bindparam, func, select
from sqlalchemy.orm import Session

from treu.db.base import WriteBatch, lookup, table_of
from treu.kit.ids import new_id
from treu.kit.time import add_months as add_months_at
from treu.kit.time import iso, local_date, utc_now
from treu.outbox.events import TierChanged
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.tiers import maths
from treu.tiers.errors import (
    MembershipDowngrade,
    UnknownTier,
)
from treu.tiers.maths import DayActivity, Ladder, TierDef
from treu.tiers.models import MemberTier, TierActivity, TierHistory
from treu.tiers.texts import history_text

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


@dataclass(frozen=True, slots=True)
class TierChange:
    """The member's tier changed with an event or a re-evaluation: what the event's
    answer says (``public``; ``treu.events.schemas.TierChange`` documents it)."""

    from_tier: str | None
    to_tier: str | None
    rank: int | None
    name: dict[str, str] | None
    """The new tier's name by language."""
    flags: tuple[str, ...]
    reason: str
    text: str
    """Why, in English."""
    since: str | None
    """In the tier since (UTC, ISO 8601)."""
    paid_until: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "from": self.from_tier,
            "to": self.to_tier,
            "rank": self.rank,
            "name": self.name,
            "flags": list(self.flags),
            "reason": self.reason,
            "text": self.text,
            "since": self.since,
        }
        if self.paid_until is not None:
            out["paid_until"] = self.paid_until
        return out

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> TierChange:
        return cls(
            data["from"],
            data["to"],
            data["rank"],
            data["name"],
            tuple(data["flags"]),
            data["reason"],
            data["text"],
            data["since"],
            data.get("paid_until"),
        )


class Ladders(Protocol):
    """Where a book gets a programme's tiers (``TierService``)."""

    def ladder(self, session: Session, programme: Programme) -> Ladder: ...

    def purchasable(self, ladder: Ladder, code: str) -> TierDef: ...


class TierBook:
    """The tiers part of one unit of work (see the module docstring)."""

    def __init__(self, session: Session, ladders: Ladders, *, now: datetime | None = None) -> None:
        self.session = session
        self.ladders = ladders
        self.now = now or utc_now()
        self._wanted: dict[uuid.UUID, tuple[Programme, Ladder, list[date]]] = {}
        self._members: dict[uuid.UUID, _Tracked] = {}
        self._history: list[dict[str, Any]] = []

    # --- loading ----------------------------------------------------------------------

    def want(self, programme: Programme, member_id: uuid.UUID, day: date | None = None) -> None:
        """Track ``member_id`` (a no-op, without a query, for a programme with no tiers)."""
        if not programme.tiers_version:
            return
        ladder = self.ladders.ladder(self.session, programme)
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
    ) -> TierChange | None:
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
        self.ladders.purchasable(tracked.ladder, code)
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
    ) -> TierChange:
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

    def _expire_paid(self, tracked: _Tracked) -> TierChange | None:
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

    def reevaluate(self, member_id: uuid.UUID) -> TierChange | None:
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
    ) -> TierChange | None:
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
    ) -> TierChange:
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
        return TierChange(
            previous,
            new,
            tier.rank if tier is not None else None,
            dict(tier.name) if tier is not None else None,
            tuple(tier.flags) if tier is not None else (),
            reason,
            text,
            iso(state.since),
            iso(state.paid_until) if state.paid_until else None,
        )

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
