"""Challenges: editing and status, the cache of active challenges, progress from events
and the member's view.

Life of a challenge: ``create`` stores a draft (validated: a bad expression is never
saved); ``update`` changes it; ``activate`` makes it count events, ``pause`` stops it for
a while, ``end`` closes it for good. Once activated, what gives progress its meaning —
trigger, conditions, goal, window, completion cap — is frozen (``ChallengeLocked``):
progress already made would otherwise mean something else. Names, descriptions and the
reward may still change; a changed reward applies to later completions.

Progress is kept by a ``ChallengeBook``, one per unit of work of event ingestion
(``treu.events.service``): ``record`` is called after each processed event and costs a
dictionary look-up when the programme has no active challenge (the active set is cached
per process for ``CACHE_SECONDS``, like the earning rules). The book does its work in
``flush``, when every event of the unit of work is known: it reads the progress rows of
all members and periods at hand with ONE query, updates them in event order, awards the
completions through the ingestion's ``LedgerWriter`` (points available at once) and adds
its writes to the ingestion's ``WriteBatch``. Members' accounts are locked by then, so
two concurrent events of one member can never both complete a period.

Returns: a return takes the returned lines' contribution off the progress of the
purchase's period, unless that period was completed — a completed challenge stays
completed, its points and badge are kept (see docs/challenges.md for why).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Uuid, bindparam, func, select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.challenges.errors import (
    ChallengeExists,
    ChallengeLocked,
    ChallengeNotFound,
    ChallengeStatusConflict,
    ChallengeWindowOver,
)
from treu.challenges.models import (
    Challenge,
    ChallengeCompletion,
    ChallengeProgress,
    ChallengeStatus,
)
from treu.challenges.schemas import (
    ChallengeProgressOut,
    CompletionOut,
    MemberChallengesOut,
    PeriodOut,
    RewardOut,
)
from treu.challenges.spec import (
    TOTAL_PERIOD,
    ChallengeSpec,
    CompiledChallenge,
    Contribution,
    Period,
    RepeatingWindow,
    period_bounds,
    period_of,
)
from treu.db.base import WriteBatch, one_by_id, table_of
from treu.errors import Invalid
from treu.kit.cache import StampedCache
from treu.kit.explanations import render_explanation as render_explanation  # its texts
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.ledger.service import LedgerWriter
from treu.members.models import Member
from treu.members.schemas import MemberRef
from treu.members.service import MemberKey, members
from treu.outbox.events import BadgeAwarded, ChallengeCompleted, DomainEvent
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rules.engine import EventView, LineView, MemberView
from treu.rules.errors import UnknownTrigger
from treu.rules.models import MemberBadge
from treu.rules.service import member_view

CACHE_SECONDS = 5.0
TEMPLATE = "challenges.completed"
"""A completion's posting: its text is in the catalogue (``treu.kit.explanations``)."""

# --------------------------------------------------------------------------- active set


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


def _repeats(spec: ChallengeSpec) -> str | None:
    return spec.window.every if isinstance(spec.window, RepeatingWindow) else None


def _compiled(row: Any, programme_id: uuid.UUID) -> CompiledChallenge:
    return CompiledChallenge(row.id, programme_id, row.code, ChallengeSpec.model_validate(row.spec))


class ChallengeService:
    def __init__(self) -> None:
        self._cache: StampedCache[uuid.UUID, ActiveChallenges] = StampedCache(CACHE_SECONDS)

    # --- editing ------------------------------------------------------------------------

    def create(
        self, session: Session, *, programme: Programme, spec: ChallengeSpec, actor: str
    ) -> Challenge:
        self._check_triggers(session, programme, spec)
        self._check_code_free(session, programme.id, spec.code)
        challenge = Challenge(
            programme_id=programme.id,
            code=spec.code,
            status=ChallengeStatus.draft.value,
            spec=spec.model_dump(mode="json"),
            revision=1,
        )
        session.add(challenge)
        session.flush()
        self._audit(session, challenge, actor, "challenge.create", {"spec": challenge.spec})
        return challenge

    def update(
        self, session: Session, challenge: Challenge, *, spec: ChallengeSpec, actor: str
    ) -> Challenge:
        """Replace the specification. After the first activation only the name, the
        description and the reward may change (``ChallengeLocked`` otherwise)."""
        self._lock_row(session, challenge)
        if challenge.status == ChallengeStatus.ended.value:
            raise ChallengeStatusConflict("an ended challenge cannot change")
        current = self.spec_of(challenge)
        if challenge.activated_at is not None:
            if spec.frozen_part != current.frozen_part:
                changed = sorted(
                    k for k, v in spec.frozen_part.items() if current.frozen_part.get(k) != v
                )
                raise ChallengeLocked(
                    f"the challenge was activated: {', '.join(changed)} cannot change any more "
                    "(end it and create a new one)",
                    fields=changed,
                )
            if spec.code != current.code:
                raise ChallengeLocked("the challenge was activated: its code cannot change")
        programme = session.get_one(Programme, challenge.programme_id)
        self._check_triggers(session, programme, spec)
        if spec.code != challenge.code:
            self._check_code_free(session, programme.id, spec.code)
        challenge.spec = spec.model_dump(mode="json")
        challenge.code = spec.code
        challenge.revision += 1
        session.flush()
        self._audit(session, challenge, actor, "challenge.update", {"spec": challenge.spec})
        self.invalidate(challenge.programme_id)
        return challenge

    def activate(
        self, session: Session, challenge: Challenge, *, actor: str, now: datetime | None = None
    ) -> Challenge:
        """Start counting events (or resume a paused challenge)."""
        now = now or utc_now()
        self._lock_row(session, challenge)
        if challenge.status == ChallengeStatus.active.value:
            return challenge
        if challenge.status == ChallengeStatus.ended.value:
            raise ChallengeStatusConflict("an ended challenge cannot be activated again")
        spec = self.spec_of(challenge)  # re-validated: the expressions still compile
        programme = session.get_one(Programme, challenge.programme_id)
        self._check_triggers(session, programme, spec)
        ends_at = spec.window.ends_at
        if ends_at is not None and ends_at <= now:
            raise ChallengeWindowOver(
                f"the window ended at {ends_at.isoformat()}: nothing could count any more"
            )
        challenge.status = ChallengeStatus.active.value
        challenge.activated_at = challenge.activated_at or now
        challenge.paused_at = None
        challenge.revision += 1
        session.flush()
        self._audit(session, challenge, actor, "challenge.activate", {})
        self.invalidate(challenge.programme_id)
        return challenge

    def pause(
        self, session: Session, challenge: Challenge, *, actor: str, now: datetime | None = None
    ) -> Challenge:
        """Stop counting until activated again; progress made so far is kept."""
        self._lock_row(session, challenge)
        if challenge.status == ChallengeStatus.paused.value:
            return challenge
        if challenge.status != ChallengeStatus.active.value:
            raise ChallengeStatusConflict(f"a {challenge.status} challenge cannot be paused")
        challenge.status = ChallengeStatus.paused.value
        challenge.paused_at = now or utc_now()
        challenge.revision += 1
        session.flush()
        self._audit(session, challenge, actor, "challenge.pause", {})
        self.invalidate(challenge.programme_id)
        return challenge

    def end(
        self, session: Session, challenge: Challenge, *, actor: str, now: datetime | None = None
    ) -> Challenge:
        """Close for good: nothing counts any more; completions stay in the history."""
        self._lock_row(session, challenge)
        if challenge.status == ChallengeStatus.ended.value:
            return challenge
        challenge.status = ChallengeStatus.ended.value
        challenge.ended_at = now or utc_now()
        challenge.revision += 1
        session.flush()
        self._audit(session, challenge, actor, "challenge.end", {})
        self.invalidate(challenge.programme_id)
        return challenge

    # --- reading ------------------------------------------------------------------------

    def get(self, session: Session, challenge_id: uuid.UUID | str) -> Challenge:
        return one_by_id(
            session, Challenge, challenge_id, missing=ChallengeNotFound, what="challenge"
        )

    def all(
        self, session: Session, *, programme_id: uuid.UUID, status: str | None = None
    ) -> list[Challenge]:
        query = select(Challenge).where(Challenge.programme_id == programme_id)
        if status is not None:
            query = query.where(Challenge.status == status)
        return list(session.scalars(query.order_by(Challenge.created_at, Challenge.id)))

    def spec_of(self, challenge: Challenge) -> ChallengeSpec:
        return ChallengeSpec.model_validate(challenge.spec)

    def completion_counts(
        self, session: Session, challenge_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        ids = list(challenge_ids)
        if not ids:
            return {}
        rows = session.execute(
            select(ChallengeCompletion.challenge_id, func.count())
            .where(ChallengeCompletion.challenge_id.in_(ids))
            .group_by(ChallengeCompletion.challenge_id)
        ).all()
        return {challenge_id: int(count) for challenge_id, count in rows}

    # --- the active set -----------------------------------------------------------------

    def invalidate(self, programme_id: uuid.UUID) -> None:
        self._cache.invalidate(programme_id)

    def active(self, session: Session, programme: Programme) -> ActiveChallenges:
        """The programme's active challenges, compiled (cached per process).

        After ``CACHE_SECONDS`` one light query checks which challenges are active at
        which revision; they are compiled again only when that changed. A change made in
        this process applies at once, in other processes within ``CACHE_SECONDS``."""
        return self._cache.get(
            programme.id,
            stamp=lambda: tuple(
                session.execute(
                    select(Challenge.id, Challenge.revision)
                    .where(
                        Challenge.programme_id == programme.id,
                        Challenge.status == ChallengeStatus.active.value,
                    )
                    .order_by(Challenge.id)
                ).all()
            ),
            build=lambda stamp: self._build(session, programme, stamp),
        )

    def _build(
        self, session: Session, programme: Programme, stamp: tuple[Any, ...]
    ) -> ActiveChallenges:
        rows = (
            session.execute(
                select(Challenge.id, Challenge.code, Challenge.spec)
                .where(Challenge.id.in_([row[0] for row in stamp]))
                .order_by(Challenge.id)
            ).all()
            if stamp
            else []
        )
        return ActiveChallenges(challenges=[_compiled(row, programme.id) for row in rows])

    def book(self, session: Session, writer: LedgerWriter) -> ChallengeBook:
        """The progress keeper of one unit of work of event ingestion."""
        return ChallengeBook(self, session, writer)

    # --- the member's view --------------------------------------------------------------

    def overview(
        self,
        session: Session,
        *,
        member: Member,
        lang: str = "en",
        now: datetime | None = None,
        history_limit: int = 100,
    ) -> MemberChallengesOut:
        """What the member can work on now (the active challenges whose window is open,
        with this member's progress in the current period) and what they completed."""
        now = now or utc_now()
        lang = "de" if lang == "de" else "en"
        programme = session.get_one(Programme, member.programme_id)
        running = [
            (c, self.spec_of(c))
            for c in self.all(
                session, programme_id=programme.id, status=ChallengeStatus.active.value
            )
        ]
        periods: dict[uuid.UUID, Period] = {}
        for challenge, spec in running:
            period = period_of(spec.window, now, programme.timezone)
            if period is not None:
                periods[challenge.id] = period
        rows: dict[tuple[uuid.UUID, str], ChallengeProgress] = {}
        if periods:
            for row in session.scalars(
                select(ChallengeProgress).where(
                    ChallengeProgress.member_id == member.id,
                    ChallengeProgress.challenge_id.in_(list(periods)),
                    ChallengeProgress.period.in_({p.key for p in periods.values()}),
                )
            ):
                rows[(row.challenge_id, row.period)] = row
        totals = (
            dict(
                session.execute(
                    select(ChallengeCompletion.challenge_id, func.count())
                    .where(
                        ChallengeCompletion.member_id == member.id,
                        ChallengeCompletion.challenge_id.in_(list(periods)),
                    )
                    .group_by(ChallengeCompletion.challenge_id)
                ).all()
            )
            if periods
            else {}
        )
        active: list[ChallengeProgressOut] = []
        for challenge, spec in running:
            period = periods.get(challenge.id)
            if period is None:
                continue
            progress = rows.get((challenge.id, period.key))
            target = spec.goal.target
            # "5 of 3 categories" reads oddly: the view shows at most the target.
            current = min(progress.current if progress else 0, target)
            done_here = bool(progress and progress.completions)
            total = int(totals.get(challenge.id, 0))
            cap = spec.max_completions
            active.append(
                ChallengeProgressOut(
                    challenge_id=challenge.id,
                    code=challenge.code,
                    name=spec.name.get(lang),
                    description=spec.description.get(lang) if spec.description else None,
                    trigger=list(spec.trigger),
                    goal=spec.goal.type,
                    current=current,
                    target=target,
                    percent=min(100, current * 100 // target),
                    values=sorted(progress.items)
                    if progress and spec.goal.type == "distinct"
                    else None,
                    period=PeriodOut(
                        key=period.key,
                        starts_at=period.starts_at,
                        ends_at=period.ends_at,
                        repeats=_repeats(spec),
                    ),
                    ends_at=period.ends_at,
                    completed=done_here,
                    completions=total,
                    max_completions=cap,
                    can_progress=not done_here and (cap is None or total < cap),
                    reward=RewardOut.of(spec.reward, lang),
                )
            )
        history = self.history(
            session, member=member, programme=programme, lang=lang, limit=history_limit
        )
        return MemberChallengesOut(member_id=member.id, lang=lang, active=active, completed=history)

    def history(
        self,
        session: Session,
        *,
        member: Member,
        programme: Programme,
        lang: str = "en",
        limit: int = 100,
    ) -> list[CompletionOut]:
        rows = session.execute(
            select(ChallengeCompletion, Challenge.code, Challenge.spec)
            .join(Challenge, Challenge.id == ChallengeCompletion.challenge_id)
            .where(ChallengeCompletion.member_id == member.id)
            .order_by(ChallengeCompletion.completed_at.desc(), ChallengeCompletion.id.desc())
            .limit(limit)
        ).all()
        out: list[CompletionOut] = []
        specs: dict[uuid.UUID, ChallengeSpec] = {}
        for completion, code, spec_json in rows:
            spec = specs.get(completion.challenge_id)
            if spec is None:  # validating compiles the expressions: once per challenge
                spec = specs[completion.challenge_id] = ChallengeSpec.model_validate(spec_json)
            starts, ends = period_bounds(spec.window, completion.period, programme.timezone)
            out.append(
                CompletionOut(
                    challenge_id=completion.challenge_id,
                    code=code,
                    name=spec.name.get(lang),
                    period=PeriodOut(
                        key=completion.period,
                        starts_at=starts,
                        ends_at=ends,
                        repeats=_repeats(spec),
                    ),
                    completed_at=completion.completed_at,
                    points=completion.points,
                    badge=completion.badge_code,
                )
            )
        return out

    # --- helpers ------------------------------------------------------------------------

    def _check_triggers(self, session: Session, programme: Programme, spec: ChallengeSpec) -> None:
        from treu.rules.event_types import event_types

        for trigger in spec.trigger:
            if trigger == "purchase":
                continue
            if event_types.get(session, programme.id, trigger) is None:
                raise UnknownTrigger(
                    f"no event type {trigger!r} in programme {programme.slug!r}: use "
                    "'purchase', a built-in engagement type or define it (POST /v1/event-types)",
                    errors=[{"field": "trigger", "message": f"unknown event type {trigger!r}"}],
                )

    def _check_code_free(self, session: Session, programme_id: uuid.UUID, code: str) -> None:
        taken = session.scalar(
            select(Challenge.id).where(
                Challenge.programme_id == programme_id, Challenge.code == code
            )
        )
        if taken is not None:
            raise ChallengeExists(f"the programme has a challenge {code!r} already", field="code")

    def _lock_row(self, session: Session, challenge: Challenge) -> None:
        session.refresh(challenge, with_for_update=True)

    def _audit(
        self, session: Session, challenge: Challenge, actor: str, action: str, data: dict[str, Any]
    ) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="challenge",
            subject_id=str(challenge.id),
            programme_id=challenge.programme_id,
            data=data,
        )


challenges = ChallengeService()


def parse_spec(data: Mapping[str, Any]) -> ChallengeSpec:
    """Validate a specification from outside; expression errors keep their line and
    column (``{"field": "condition", "message": ..., "line": 1, "column": 9, ...}``)."""
    from treu.rules.spec import expression_error_details

    try:
        return ChallengeSpec.model_validate(dict(data))
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            item: dict[str, Any] = {"field": where, "message": error["msg"]}
            position = expression_error_details(dict(error))
            if position is not None:
                item["field"] = position["field"] or where
                item.update({k: position[k] for k in ("line", "column", "offset")})
            errors.append(item)
        raise Invalid("the challenge is not valid", errors=errors) from None


# --------------------------------------------------------------------------- the book


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


class BadgeSink(Protocol):
    """Badges held and to be written in this unit of work, shared with the earning
    rules so that a badge code is awarded once per member whoever awards it. (The
    ingestion passes its earning context; if that has a ``tier_book`` with
    ``tier_of(member_id)``, conditions see ``member.tier`` from it.)"""

    badges_held: dict[uuid.UUID, set[str]]
    badge_rows: list[dict[str, Any]]


class TierSource(Protocol):
    def tier_of(self, member_id: uuid.UUID) -> str | None: ...


@dataclass
class _OwnBadges:
    badges_held: dict[uuid.UUID, set[str]] = field(default_factory=dict)
    badge_rows: list[dict[str, Any]] = field(default_factory=list)


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
    result: dict[str, Any]
    badges: BadgeSink | None
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
    member: MemberKey | None, programme: Programme, at: datetime, tier: str | None
) -> MemberView:
    if member is None:
        return MemberView.of(at=at, timezone=programme.timezone, tier=tier)
    return member_view(member, programme, at, tier=tier)


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

    def __init__(self, service: ChallengeService, session: Session, writer: LedgerWriter) -> None:
        self.service = service
        self.session = session
        self.writer = writer
        self._items: list[_Item] = []
        self._rows: dict[tuple[uuid.UUID, uuid.UUID, str], _Row] = {}
        self._completions: list[dict[str, Any]] = []
        self._events: list[DomainEvent] = []
        self._own_badges = _OwnBadges()
        self._contributed: dict[uuid.UUID, dict[str, Any]] = {}
        self._awarded: dict[uuid.UUID, int] = defaultdict(int)
        self._members: dict[uuid.UUID, MemberKey | None] = {}
        self._programme_ids: dict[uuid.UUID, uuid.UUID] = {}
        self._originals: dict[Any, ReturnedPurchase] = {}

    # --- recording ----------------------------------------------------------------------

    def record(
        self,
        programme: Programme,
        member: MemberKey | None,
        row: dict[str, Any],
        lines: list[dict[str, Any]],
        result: dict[str, Any],
        originals: Mapping[Any, ReturnedPurchase] | None = None,
        badges: BadgeSink | None = None,
    ) -> None:
        """Note one processed event (its stored ``row``, purchase ``lines`` and the
        ``result`` the client gets). Nothing happens when the programme has no active
        challenge; the work is done in ``flush``."""
        active = self.service.active(self.session, programme)
        if not active.challenges:
            return
        member_id = row.get("member_id")
        if member_id is None:
            return
        item = _Item(programme, active, member_id, member, row, result, badges)
        kind = row["type"]
        data = row.get("data") or {}
        tier_book: TierSource | None = getattr(badges, "tier_book", None)
        if tier_book is not None:
            item.tier = tier_book.tier_of(member_id)
        if kind == "return":
            original = self._original(originals or {}, row.get("original_event_id"))
            if original is not None:
                item.original = original
                item.before, item.after = _returned_lines(original, data.get("lines") or [])
        elif kind in active.by_trigger and not data.get("blocked"):
            item.lines = lines
        self._items.append(item)  # others only keep the answer's balance right

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
            balance = item.result.get("balance")
            awarded = self._awarded.get(item.member_id, 0)
            if awarded and isinstance(balance, dict):
                # The answer showed the balance before the book's (later) awards.
                balance["available"] = int(balance["available"]) + awarded
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

    def _member_view(self, item: _Item, challenge: CompiledChallenge, at: datetime) -> MemberView:
        member = item.member
        if member is None and challenge.uses_member:
            if item.member_id not in self._members:
                found = members.resolve_many(
                    self.session,
                    programme_id=item.programme.id,
                    refs=[MemberRef(member_id=item.member_id)],
                )
                self._members[item.member_id] = next(iter(found.values()), None)
            member = self._members[item.member_id]
        return _member_view(member, item.programme, at, item.tier)

    def _progress(self, item: _Item) -> None:
        entries: list[dict[str, Any]] = []
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
                mview = self._member_view(item, challenge, view.occurred_at)
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
            entry = self._entry(challenge, period, state, state.current - before)
            if state.current >= challenge.target:
                entry["completed"] = True
                entry["reward"] = self._complete(item, challenge, period, state, total, view)
            entries.append(entry)
        if contributed and item.row["type"] == "purchase":
            # Kept with the purchase, so that a return knows what it counted for.
            self._contributed[item.row["id"]] = contributed
            item.row["data"]["challenges"] = contributed
        if entries:
            item.result["challenges"] = entries

    def _add(self, state: _Row, challenge: CompiledChallenge, amount: Contribution) -> None:
        if isinstance(amount, frozenset):
            for value in amount:
                state.items[value] = state.items.get(value, 0) + 1
            state.current = len(state.items)
        else:
            state.current += amount
        state.dirty = True

    def _entry(
        self, challenge: CompiledChallenge, period: Period | str, state: _Row, change: int
    ) -> dict[str, Any]:
        return {
            "challenge_id": str(challenge.id),
            "code": challenge.code,
            "period": period.key if isinstance(period, Period) else period,
            "progress": {"current": state.current, "target": challenge.target},
            "change": change,
            "completed": False,
        }

    def _complete(
        self,
        item: _Item,
        challenge: CompiledChallenge,
        period: Period,
        state: _Row,
        total: _Row | None,
        view: EventView,
    ) -> dict[str, Any]:
        spec = challenge.spec
        at = view.occurred_at
        state.completions = 1
        state.completed_at = at
        if total is not None:
            total.completions += 1
            total.completed_at = at
            total.dirty = True
        reward = spec.reward
        out: dict[str, Any] = {"points": reward.points}
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
            out["posting"] = posting.public()
        badge_code: str | None = None
        if reward.badge is not None:
            sink = item.badges or self._own_badges
            held = sink.badges_held.get(item.member_id)
            if held is None:
                held = set(
                    self.session.scalars(
                        select(MemberBadge.code).where(MemberBadge.member_id == item.member_id)
                    )
                )
                sink.badges_held[item.member_id] = held
            badge = reward.badge
            if badge.code not in held:
                held.add(badge.code)
                data = badge.model_dump(mode="json", exclude_none=True)
                sink.badge_rows.append(
                    {
                        "id": new_id(),
                        "member_id": item.member_id,
                        "programme_id": item.programme.id,
                        "code": badge.code,
                        "badge": data,
                        "rule_id": None,
                        "rule_version": None,
                        "event_id": item.row["id"],
                        "awarded_at": self.writer.now,
                    }
                )
                badge_code = badge.code
                out["badge"] = data
                self._events.append(
                    BadgeAwarded(
                        programme_id=item.programme.id,
                        member_id=item.member_id,
                        occurred_at=self.writer.now,
                        badge=badge.code,
                        challenge_id=challenge.id,
                        event_id=item.row["id"],
                    )
                )
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
                "badge_code": badge_code,
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
        return out

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
        entries: list[dict[str, Any]] = []
        for key, record in recorded.items():
            challenge = item.active.by_id.get(uuid.UUID(key))
            if challenge is None:
                continue  # paused or ended: nothing changes any more
            state = self._row(challenge.id, item.member_id, str(record["p"]))
            if state.completions:
                continue  # completed stays completed
            mview = self._member_view(item, challenge, at)
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
                entries.append(
                    self._entry(challenge, str(record["p"]), state, state.current - previous)
                )
        if entries:
            item.result["challenges"] = entries

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
        batch.insert(table_of(MemberBadge), self._own_badges.badge_rows)
        self._own_badges.badge_rows = []
        outbox.add_to(batch, self._events, now=now)
        self._events = []


def _amount(value: Contribution | None) -> int:
    return value if isinstance(value, int) else 0


def _values(value: Contribution | None) -> set[str]:
    return set(value) if isinstance(value, frozenset) else set()
