"""Challenge progress in one unit of work of ingestion (``ChallengeBook``): counting
events, completing periods, awarding points and badges, undoing what returns take back."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Uuid, bindparam, select
from sqlalchemy.orm import Session

from treu.challenges.models import (
    ChallengeCompletion,
    ChallengeProgress,
)
from treu.challenges.spec import (
    TOTAL_PERIOD,
    CompiledChallenge,
    Contribution,
    Period,
    period_of,
)
from treu.db.base import WriteBatch, table_of
from treu.kit.explanations import render_explanation as render_explanation  # its texts
from treu.kit.ids import new_id
from treu.ledger.service import LedgerWriter
from treu.members.schemas import MemberRef
from treu.members.service import MemberKey, members
from treu.outbox.events import ChallengeCompleted, DomainEvent
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rules.badges import BadgeBook
from treu.rules.engine import EventView, LineView, MemberView
from treu.rules.service import member_view
from treu.rules.spec import Badge
from treu.segments import membership

# --------------------------------------------------------------------------- the book


TEMPLATE = "challenges.completed"
"""A completion's posting: its text is in the catalogue (``treu.kit.explanations``)."""


@dataclass
class ActiveChallenges:
    """A programme's active challenges, compiled, by trigger."""

    challenges: list[CompiledChallenge]
    by_trigger: dict[str, list[CompiledChallenge]] = field(default_factory=dict)
    by_id: dict[uuid.UUID, CompiledChallenge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for challenge in self.challenges:
            self.by_id[challenge.id] = challenge
            for trigger in challenge.triggers:
                self.by_trigger.setdefault(trigger, []).append(challenge)


class Active(Protocol):
    """Where a book gets a programme's active challenges (``ChallengeService``)."""

    def active(self, session: Session, programme: Programme) -> ActiveChallenges: ...


class ReturnedPurchase(Protocol):
    """What the book reads of the purchase a return refers to (ingestion's record of it,
    with ``returned_quantity`` already advanced by the return)."""

    id: uuid.UUID
    member_id: uuid.UUID | None
    currency: str | None
    data: dict[str, Any]
    occurred_at: datetime | None
    channel: str | None
    store: str | None

    @property
    def lines(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ChallengeReward:
    """What completing a challenge gave."""

    points: int
    posting: dict[str, Any] | None = None
    """The points' posting, as the ledger shows it in an answer (none for 0 points)."""
    badge: Badge | None = None
    """The challenge's badge, if the member did not hold it before."""

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points}
        if self.posting is not None:
            out["posting"] = self.posting
        if self.badge is not None:
            out["badge"] = self.badge.model_dump(mode="json", exclude_none=True)
        return out

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> ChallengeReward:
        badge = data.get("badge")
        return cls(
            data["points"],
            data.get("posting"),
            None if badge is None else Badge.model_validate(badge),
        )


@dataclass(frozen=True, slots=True)
class ChallengeStep:
    """How an event moved one challenge (a return can move it back): what the event's
    answer says (``public``; ``treu.events.schemas.ChallengeStep`` documents it)."""

    challenge_id: uuid.UUID
    code: str
    period: str
    current: int
    target: int
    change: int
    reward: ChallengeReward | None = None
    """Given when this event completed the challenge."""

    @property
    def completed(self) -> bool:
        return self.reward is not None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "challenge_id": str(self.challenge_id),
            "code": self.code,
            "period": self.period,
            "progress": {"current": self.current, "target": self.target},
            "change": self.change,
            "completed": self.completed,
        }
        if self.reward is not None:
            out["reward"] = self.reward.public()
        return out

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> ChallengeStep:
        reward = data.get("reward")
        return cls(
            uuid.UUID(data["challenge_id"]),
            data["code"],
            data["period"],
            data["progress"]["current"],
            data["progress"]["target"],
            data["change"],
            None if reward is None else ChallengeReward.from_public(reward),
        )


@dataclass
class ChallengeAnswer:
    """What the book adds to one event's answer, known after ``flush``."""

    steps: tuple[ChallengeStep, ...] = ()
    awarded: int = 0
    """Points the book's awards credited to the member up to and including this event:
    the answer showed the balance before them, as they are credited later."""


@dataclass
class _Row:
    current: int = 0
    items: dict[str, int] = field(default_factory=dict)
    completions: int = 0
    completed_at: datetime | None = None
    stored: bool = False
    dirty: bool = False


@dataclass
class _Item:
    """One recorded event, processed in ``flush``."""

    programme: Programme
    active: ActiveChallenges
    member_id: uuid.UUID
    member: MemberKey | None
    row: dict[str, Any]
    answer: ChallengeAnswer
    lines: list[dict[str, Any]] | None = None
    """A purchase or engagement event that may count: its purchase lines."""
    periods: list[tuple[CompiledChallenge, Period]] = field(default_factory=list)
    """The challenges of its type and the periods it falls in (``_load``)."""
    original: ReturnedPurchase | None = None
    tier: str | None = None
    """``member.tier`` as the event left it."""
    before: list[LineView] = field(default_factory=list)
    after: list[LineView] = field(default_factory=list)


def _line_view(line: Mapping[str, Any], quantity: int) -> LineView:
    return LineView.of(
        line["sku"],
        unit_price_minor=int(line["unit_price_minor"]),
        quantity=quantity,
        name=line.get("name"),
        category=line.get("category"),
        tags=line.get("tags") or (),
    )


def _returned_lines(
    original: ReturnedPurchase, returned: list[dict[str, Any]]
) -> tuple[list[LineView], list[LineView]]:
    """The purchase's kept lines before and after this return. Ingestion takes a return
    from the purchase's lines of that sku in order, so giving the quantities back from
    the last line of the sku first restores the state before the return."""
    lines = original.lines
    back = [0] * len(lines)
    wanted: dict[str, int] = defaultdict(int)
    for line in returned:
        wanted[str(line["sku"])] += int(line["quantity"])
    for sku, quantity in wanted.items():
        left = quantity
        for k in reversed(range(len(lines))):
            if left == 0:
                break
            if lines[k]["sku"] != sku:
                continue
            give = min(int(lines[k]["returned_quantity"]) - back[k], left)
            back[k] += give
            left -= give
    before: list[LineView] = []
    after: list[LineView] = []
    for k, line in enumerate(lines):
        kept = int(line["quantity"]) - int(line["returned_quantity"])
        if kept + back[k] > 0:
            before.append(_line_view(line, kept + back[k]))
        if kept > 0:
            after.append(_line_view(line, kept))
    return before, after


def _member_view(
    member: MemberKey | None,
    programme: Programme,
    at: datetime,
    tier: str | None,
    segments: frozenset[str] = frozenset(),
) -> MemberView:
    if member is None:
        return MemberView.of(at=at, timezone=programme.timezone, tier=tier, segments=segments)
    return member_view(member, programme, at, tier=tier, segments=segments)


_PROGRESS_COLUMNS = (
    ChallengeProgress.challenge_id,
    ChallengeProgress.member_id,
    ChallengeProgress.period,
    ChallengeProgress.current,
    ChallengeProgress.items,
    ChallengeProgress.completions,
    ChallengeProgress.completed_at,
)
_LOAD_PROGRESS = select(*_PROGRESS_COLUMNS).where(
    ChallengeProgress.challenge_id.in_(bindparam("challenges", expanding=True, type_=Uuid())),
    ChallengeProgress.member_id.in_(bindparam("members", expanding=True, type_=Uuid())),
    ChallengeProgress.period.in_(bindparam("periods", expanding=True)),
)


class ChallengeBook:
    """Challenge progress of one unit of work of event ingestion (see the module
    docstring). Not thread-safe; one per unit of work."""

    def __init__(
        self, service: Active, session: Session, writer: LedgerWriter, badges: BadgeBook
    ) -> None:
        self.service = service
        self.session = session
        self.writer = writer
        self.badges = badges
        """Shared with the earning rules: each badge code once per member."""
        self._items: list[_Item] = []
        self._rows: dict[tuple[uuid.UUID, uuid.UUID, str], _Row] = {}
        self._completions: list[dict[str, Any]] = []
        self._events: list[DomainEvent] = []
        self._contributed: dict[uuid.UUID, dict[str, Any]] = {}
        self._awarded: dict[uuid.UUID, int] = defaultdict(int)
        self._members: dict[uuid.UUID, MemberKey | None] = {}
        self._segments: dict[uuid.UUID, frozenset[str]] = {}
        self._programme_ids: dict[uuid.UUID, uuid.UUID] = {}
        self._originals: dict[Any, ReturnedPurchase] = {}

    # --- recording ----------------------------------------------------------------------

    def record(
        self,
        programme: Programme,
        member: MemberKey | None,
        row: dict[str, Any],
        lines: list[dict[str, Any]],
        originals: Mapping[Any, ReturnedPurchase] | None = None,
        *,
        tier: str | None = None,
    ) -> ChallengeAnswer | None:
        """Note one processed event (its stored ``row`` and purchase ``lines``; ``tier``:
        the member's as the event left it). The work is done in ``flush``, which fills
        the returned answer; None when the programme has no active challenge."""
        active = self.service.active(self.session, programme)
        if not active.challenges:
            return None
        member_id = row.get("member_id")
        if member_id is None:
            return None
        answer = ChallengeAnswer()
        item = _Item(programme, active, member_id, member, row, answer, tier=tier)
        kind = row["type"]
        data = row.get("data") or {}
        if kind == "return":
            original = self._original(originals or {}, row.get("original_event_id"))
            if original is not None:
                item.original = original
                item.before, item.after = _returned_lines(original, data.get("lines") or [])
        elif kind in active.by_trigger and not data.get("blocked"):
            item.lines = lines
        self._items.append(item)  # others only keep the answer's balance right
        return answer

    def _original(
        self, originals: Mapping[Any, ReturnedPurchase], event_id: Any
    ) -> ReturnedPurchase | None:
        found = self._originals.get(event_id)
        if found is None and len(self._originals) != len(originals):
            self._originals = {o.id: o for o in originals.values()}
            found = self._originals.get(event_id)
        return found

    def _view(self, item: _Item) -> EventView:
        row, data = item.row, item.row.get("data") or {}
        if row["type"] == "purchase":
            return EventView.purchase(
                occurred_at=row["occurred_at"],
                timezone=item.programme.timezone,
                currency=row["currency"],
                lines=[_line_view(line, int(line["quantity"])) for line in item.lines or ()],
                channel=row.get("channel"),
                store=row.get("store"),
            )
        return EventView.engagement(
            row["type"],
            occurred_at=row["occurred_at"],
            timezone=item.programme.timezone,
            attrs=data.get("attributes") or {},
            channel=row.get("channel"),
            store=row.get("store"),
        )

    # --- processing ---------------------------------------------------------------------

    def flush(self, batch: WriteBatch) -> None:
        """Process the recorded events in order and add the writes to ``batch``.

        Call before the ledger writer's own ``flush``: awards are ledger postings."""
        items, self._items = self._items, []
        if not items:
            return
        self._load(items)
        for item in items:
            if item.periods:
                self._progress(item)
            elif item.original is not None:
                self._return(item, item.original)
            item.answer.awarded = self._awarded.get(item.member_id, 0)
        self._write(batch)

    def _load(self, items: list[_Item]) -> None:
        """ONE query for the progress rows of every member, challenge and period at hand."""
        challenge_ids: set[uuid.UUID] = set()
        member_ids: set[uuid.UUID] = set()
        periods: set[str] = set()
        for item in items:
            if item.lines is not None:
                at = item.row["occurred_at"]
                for challenge in item.active.by_trigger[item.row["type"]]:
                    period = period_of(challenge.spec.window, at, item.programme.timezone)
                    if period is None:
                        continue
                    item.periods.append((challenge, period))
                    challenge_ids.add(challenge.id)
                    periods.add(period.key)
                    if challenge.spec.repeating and challenge.spec.max_completions is not None:
                        periods.add(TOTAL_PERIOD)
                if not item.periods:
                    continue
            elif item.original is not None:
                for key, record in (item.original.data.get("challenges") or {}).items():
                    challenge_ids.add(uuid.UUID(key))
                    periods.add(str(record["p"]))
            else:
                continue
            member_ids.add(item.member_id)
            for challenge in item.active.challenges:
                self._programme_ids[challenge.id] = item.programme.id
        if not challenge_ids or not member_ids:
            return
        for row in self.session.connection().execute(
            _LOAD_PROGRESS,
            {
                "challenges": sorted(challenge_ids),
                "members": sorted(member_ids),
                "periods": sorted(periods),
            },
        ):
            key = (row.challenge_id, row.member_id, row.period)
            self._rows[key] = _Row(
                int(row.current),
                dict(row.items or {}),
                int(row.completions),
                row.completed_at,
                stored=True,
            )

    def _row(self, challenge_id: uuid.UUID, member_id: uuid.UUID, period: str) -> _Row:
        return self._rows.setdefault((challenge_id, member_id, period), _Row())

    def _member_view(
        self, item: _Item, challenges: list[CompiledChallenge], at: datetime
    ) -> MemberView:
        """The member as the conditions of ``challenges`` see them: looked up only when
        one of them reads ``member.*``, their segments only when one reads those."""
        member = item.member
        uses_member = any(challenge.uses_member for challenge in challenges)
        slugs: frozenset[str] = frozenset()
        if any(challenge.uses_segments for challenge in challenges):
            if item.member_id not in self._segments:
                found_slugs = membership.slugs_of_many(self.session, member_ids={item.member_id})
                self._segments[item.member_id] = found_slugs.get(item.member_id, frozenset())
            slugs = self._segments[item.member_id]
        if member is None and uses_member:
            if item.member_id not in self._members:
                found = members.resolve_many(
                    self.session,
                    programme_id=item.programme.id,
                    refs=[MemberRef(member_id=item.member_id)],
                )
                self._members[item.member_id] = next(iter(found.values()), None)
            member = self._members[item.member_id]
        return _member_view(member, item.programme, at, item.tier, slugs)

    def _progress(self, item: _Item) -> None:
        steps: list[ChallengeStep] = []
        contributed: dict[str, Any] = {}
        view: EventView | None = None
        mview: MemberView | None = None
        for challenge, period in item.periods:
            spec = challenge.spec
            state = self._row(challenge.id, item.member_id, period.key)
            if state.completions:
                continue  # a period is completed once
            total: _Row | None = None
            if spec.repeating and spec.max_completions is not None:
                total = self._row(challenge.id, item.member_id, TOTAL_PERIOD)
                if total.completions >= spec.max_completions:
                    continue
            if view is None:
                view = self._view(item)
            if mview is None:
                mview = self._member_view(item, [c for c, _ in item.periods], view.occurred_at)
            amount = challenge.contribution(view, mview)
            if amount is None:
                continue
            before = state.current
            self._add(state, challenge, amount)
            record: dict[str, Any] = {"p": period.key}
            if isinstance(amount, frozenset):
                record["v"] = sorted(amount)
            else:
                record["n"] = amount
            contributed[str(challenge.id)] = record
            change, reward = state.current - before, None
            if state.current >= challenge.target:
                reward = self._complete(item, challenge, period, state, total, view)
            steps.append(self._step(challenge, period.key, state, change, reward))
        if contributed and item.row["type"] == "purchase":
            # Kept with the purchase, so that a return knows what it counted for.
            self._contributed[item.row["id"]] = contributed
            item.row["data"]["challenges"] = contributed
        item.answer.steps = tuple(steps)

    def _add(self, state: _Row, challenge: CompiledChallenge, amount: Contribution) -> None:
        if isinstance(amount, frozenset):
            for value in amount:
                state.items[value] = state.items.get(value, 0) + 1
            state.current = len(state.items)
        else:
            state.current += amount
        state.dirty = True

    def _step(
        self,
        challenge: CompiledChallenge,
        period: str,
        state: _Row,
        change: int,
        reward: ChallengeReward | None = None,
    ) -> ChallengeStep:
        return ChallengeStep(
            challenge.id, challenge.code, period, state.current, challenge.target, change, reward
        )

    def _complete(
        self,
        item: _Item,
        challenge: CompiledChallenge,
        period: Period,
        state: _Row,
        total: _Row | None,
        view: EventView,
    ) -> ChallengeReward:
        spec = challenge.spec
        at = view.occurred_at
        state.completions = 1
        state.completed_at = at
        if total is not None:
            total.completions += 1
            total.completed_at = at
            total.dirty = True
        reward = spec.reward
        public: dict[str, Any] | None = None
        posting_id: uuid.UUID | None = None
        if reward.points > 0:
            account = self.writer.account(item.member_id)
            params: dict[str, Any] = {
                "name": spec.name.model_dump(exclude_none=True),
                "code": challenge.code,
                "points": reward.points,
            }
            posting = self.writer.earn(
                account,
                programme=item.programme,
                points=reward.points,
                earned_at=at,
                details={"template": TEMPLATE, "params": params},
                pending=False,
            )
            posting_id = posting.id
            self._awarded[item.member_id] += reward.points
            public = posting.public()
        badge = reward.badge
        if badge is not None and not self.badges.award(
            badge,
            member_id=item.member_id,
            programme_id=item.programme.id,
            event_id=item.row["id"],
            challenge_id=challenge.id,
        ):
            badge = None  # held already (from a rule, another challenge, earlier)
        self._completions.append(
            {
                "id": new_id(),
                "challenge_id": challenge.id,
                "member_id": item.member_id,
                "programme_id": item.programme.id,
                "period": period.key,
                "event_id": item.row["id"],
                "completed_at": at,
                "points": reward.points,
                "posting_id": posting_id,
                "badge_code": None if badge is None else badge.code,
                "created_at": self.writer.now,
            }
        )
        self._events.append(
            ChallengeCompleted(
                programme_id=item.programme.id,
                member_id=item.member_id,
                occurred_at=at,
                challenge_id=challenge.id,
                challenge_code=challenge.code,
                period=period.key,
                points=reward.points,
                event_id=item.row["id"],
            )
        )
        return ChallengeReward(reward.points, public, badge)

    def _return(self, item: _Item, original: ReturnedPurchase) -> None:
        """Take the returned lines' contribution off the open periods they counted in."""
        recorded: dict[str, Any] | None = original.data.get("challenges")
        if recorded is None:
            recorded = self._contributed.get(original.id)
            if recorded is None:
                return
            # Bought in this unit of work: the purchase row is rewritten with the
            # return's changes, so it must carry the record too.
            original.data["challenges"] = recorded
        at = original.occurred_at or item.row["occurred_at"]
        currency = original.currency or item.programme.currency
        steps: list[ChallengeStep] = []
        for key, record in recorded.items():
            challenge = item.active.by_id.get(uuid.UUID(key))
            if challenge is None:
                continue  # paused or ended: nothing changes any more
            state = self._row(challenge.id, item.member_id, str(record["p"]))
            if state.completions:
                continue  # completed stays completed
            mview = self._member_view(item, [challenge], at)
            was = self._contribution(challenge, item, original, item.before, at, currency, mview)
            now = self._contribution(challenge, item, original, item.after, at, currency, mview)
            previous = state.current
            if "v" in record:
                counted = set(record["v"])
                gone = (counted & _values(was)) - (counted & _values(now))
                for value in gone:
                    left = state.items.get(value, 0) - 1
                    if left > 0:
                        state.items[value] = left
                    else:
                        state.items.pop(value, None)
                state.current = len(state.items)
                if gone:
                    state.dirty = True
            else:
                counted_n = int(record["n"])
                taken = min(counted_n, _amount(was)) - min(counted_n, _amount(now))
                if taken > 0:
                    state.current = max(state.current - taken, 0)
                    state.dirty = True
            if state.current != previous:
                steps.append(
                    self._step(challenge, str(record["p"]), state, state.current - previous)
                )
        item.answer.steps = tuple(steps)

    def _contribution(
        self,
        challenge: CompiledChallenge,
        item: _Item,
        original: ReturnedPurchase,
        lines: list[LineView],
        at: datetime,
        currency: str,
        mview: MemberView,
    ) -> Contribution | None:
        if not lines:
            return None  # everything returned: the purchase no longer counts
        view = EventView.purchase(
            occurred_at=at,
            timezone=item.programme.timezone,
            currency=currency,
            lines=lines,
            channel=original.channel,
            store=original.store,
        )
        return challenge.contribution(view, mview)

    # --- writing ------------------------------------------------------------------------

    def _write(self, batch: WriteBatch) -> None:
        now = self.writer.now
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for (challenge_id, member_id, period), state in self._rows.items():
            if not state.dirty:
                continue
            values = {
                "current": state.current,
                "items": state.items,
                "completions": state.completions,
                "completed_at": state.completed_at,
                "updated_at": now,
            }
            key = {"challenge_id": challenge_id, "member_id": member_id, "period": period}
            if state.stored:
                updates.append(values | key)
            else:
                inserts.append(key | {"programme_id": self._programme_ids[challenge_id]} | values)
            state.stored, state.dirty = True, False
        batch.insert(table_of(ChallengeProgress), inserts)
        batch.update(
            table_of(ChallengeProgress), updates, key=("challenge_id", "member_id", "period")
        )
        batch.insert(table_of(ChallengeCompletion), self._completions)
        self._completions = []
        outbox.add_to(batch, self._events, now=now)
        self._events = []
        self.badges.flush(batch)  # the challenges' badges


def _amount(value: Contribution | None) -> int:
    return value if isinstance(value, int) else 0


def _values(value: Contribution | None) -> set[str]:
    return set(value) if isinstance(value, frozenset) else set()
