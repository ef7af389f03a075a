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
completions through the ingestion's ``LedgerWriter`` (points available at once) and its
``BadgeBook`` (shared with the earning rules: a badge code once per member) and adds its
writes to the ingestion's ``WriteBatch``. Members' accounts are locked by then, so
two concurrent events of one member can never both complete a period.

Returns: a return takes the returned lines' contribution off the progress of the
purchase's period, unless that period was completed — a completed challenge stays
completed, its points and badge are kept (see docs/challenges.md for why).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.challenges.book import ActiveChallenges, ChallengeBook
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
    ChallengeSpec,
    CompiledChallenge,
    Period,
    RepeatingWindow,
    period_bounds,
    period_of,
)
from treu.db.base import one_by_id
from treu.errors import Invalid
from treu.kit.cache import StampedCache
from treu.kit.explanations import render_explanation as render_explanation  # its texts
from treu.kit.time import utc_now
from treu.ledger.service import LedgerWriter
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rules.badges import BadgeBook
from treu.rules.errors import UnknownTrigger

CACHE_SECONDS = 5.0

# --------------------------------------------------------------------------- active set


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

    def participant_counts(
        self, session: Session, challenge_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """Per challenge: the members with progress in any period (one grouped query)."""
        ids = list(challenge_ids)
        if not ids:
            return {}
        rows = session.execute(
            select(
                ChallengeProgress.challenge_id,
                func.count(func.distinct(ChallengeProgress.member_id)),
            )
            .where(ChallengeProgress.challenge_id.in_(ids))
            .group_by(ChallengeProgress.challenge_id)
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

    def book(self, session: Session, writer: LedgerWriter, badges: BadgeBook) -> ChallengeBook:
        """The progress keeper of one unit of work of event ingestion; ``badges``: the
        unit of work's, shared with the earning rules."""
        return ChallengeBook(self, session, writer, badges)

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
            item: dict[str, Any] = {"field": where, "message": error["msg"], "type": error["type"]}
            bounds = {
                k: v
                for k, v in (error.get("ctx") or {}).items()
                if k in ("ge", "gt", "le", "lt", "max_length") and isinstance(v, int | float)
            }
            if bounds:  # what a form needs to word the limit in its own language
                item["ctx"] = bounds
            position = expression_error_details(dict(error))
            if position is not None:
                item["field"] = position["field"] or where
                item.update({k: position[k] for k in ("line", "column", "offset")})
            errors.append(item)
        raise Invalid("the challenge is not valid", errors=errors) from None
