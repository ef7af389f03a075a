"""Journeys: settings per programme and kind, and firing them — once per member and
occasion, with a sticky holdout, a reward and an outbox message in one unit of work.

A journey *fires* for a batch of members (``fire``): each gets an exposure row
(``journey_exposures``, treated or held out); the row is written ``ON CONFLICT DO
NOTHING`` and only the rows this call wrote go on, so a job run twice, or two workers
racing, reach each member once per occasion (on PostgreSQL the second writer waits on
the unique index until the first commits, then writes nothing). Treated members get
the reward's coupon and a ``campaign.message`` outbox event keyed by the occasion —
a second guard that makes the message unique as well. Held-out members get nothing but
their exposure row. What the message says, and whether it may go (consent, the
frequency cap), is the channels' business (``treu.messaging.channel``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.journeys.errors import InvalidJourney
from treu.journeys.models import Arm, Journey, JourneyExposure, JourneyKind, JourneyProgramme
from treu.kit.ids import new_id
from treu.kit.time import QUIET_END, QUIET_START, quiet_until, time_of_day, utc_now
from treu.messaging.keys import message_keys
from treu.outbox.events import CampaignMessage
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rewards.catalogue import VIEW_COLUMNS, RewardView
from treu.rewards.coupons import gift_coupons
from treu.rewards.models import COUPON_TYPES, Reward, RewardType
from treu.segments.membership import members_of
from treu.segments.models import Segment, SegmentMember

MARKETING = frozenset(
    {
        JourneyKind.first_purchase,
        JourneyKind.birthday,
        JourneyKind.inactivity,
        JourneyKind.tier_at_risk,
        JourneyKind.thank_you,
    }
)
"""Kinds that are marketing (granted consent, the frequency cap, quiet hours); the
others (welcome, points expiring, tier upgrade) are transactional service messages."""

TEMPLATES: dict[JourneyKind, str] = {
    JourneyKind.welcome: "welcome",
    JourneyKind.first_purchase: "first_purchase",
    JourneyKind.birthday: "birthday",
    JourneyKind.inactivity: "inactivity",
    JourneyKind.points_expiring: "points_expiring",
    JourneyKind.tier_upgrade: "tier_upgraded",
    JourneyKind.tier_at_risk: "tier_at_risk",
    JourneyKind.thank_you: "thank_you",
}
"""Each kind's template unless the journey names another. A step after the first uses
``<template>_<step>`` (``inactivity_2``)."""

DEFAULT_PARAMS: dict[JourneyKind, dict[str, int]] = {
    JourneyKind.welcome: {},
    JourneyKind.first_purchase: {},
    JourneyKind.birthday: {"days_before": 0},
    JourneyKind.inactivity: {"inactive_days": 90, "second_step_days": 30},
    JourneyKind.points_expiring: {"days_before": 14},
    JourneyKind.tier_upgrade: {},
    JourneyKind.tier_at_risk: {"days_before": 30},
    JourneyKind.thank_you: {"top_percent": 5},
}

OWNS: dict[JourneyKind, str] = {
    JourneyKind.welcome: "member.enrolled",
    JourneyKind.points_expiring: "points.expiring",
    JourneyKind.tier_upgrade: "tier.changed",
}
"""The e-mail channel's built-in transactional mail an enabled journey replaces: while
the journey runs, its message is the one mail (no double welcome)."""

_EXPOSURES = table_of(JourneyExposure)


def bucket(member_id: uuid.UUID, journey_id: uuid.UUID) -> int:
    """0..99, the same for a member and journey every time (sticky holdout)."""
    digest = hashlib.sha256(member_id.bytes + journey_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % 100


def held_out(member_id: uuid.UUID, journey: Journey) -> bool:
    return bucket(member_id, journey.id) < journey.holdout_pct


@dataclass(frozen=True, slots=True)
class Target:
    """One member a journey reaches on one occasion, with the facts of its message."""

    member_id: uuid.UUID
    occasion: str
    step: int = 1
    facts: dict[str, Any] = field(default_factory=dict)
    """``points``, ``expires_at``, ``tier``, ``previous_tier``, ``missing``, ``until``."""


@dataclass(frozen=True, slots=True)
class Fired:
    treated: int
    held_out: int


def _reward(session: Session, reward_id: uuid.UUID) -> RewardView | None:
    row = session.execute(select(*VIEW_COLUMNS).where(Reward.id == reward_id)).first()
    return RewardView(*row) if row is not None else None


def _insert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert


class JourneyService:
    # --- settings ------------------------------------------------------------------------

    def get(self, session: Session, programme_id: uuid.UUID, kind: JourneyKind) -> Journey | None:
        return session.scalars(
            select(Journey).where(Journey.programme_id == programme_id, Journey.kind == kind.value)
        ).first()

    def all(self, session: Session, programme_id: uuid.UUID) -> list[Journey]:
        """Every kind, a stored row or an unsaved default one (switched off)."""
        rows = {
            j.kind: j
            for j in session.scalars(select(Journey).where(Journey.programme_id == programme_id))
        }
        return [rows.get(kind.value) or self.default(programme_id, kind) for kind in JourneyKind]

    def default(self, programme_id: uuid.UUID, kind: JourneyKind) -> Journey:
        return Journey(
            programme_id=programme_id,
            kind=kind.value,
            enabled=False,
            template=TEMPLATES[kind],
            params=dict(DEFAULT_PARAMS[kind]),
            reward_id=None,
            holdout_pct=0,
            segments=[],
        )

    def put(
        self,
        session: Session,
        programme: Programme,
        kind: JourneyKind,
        *,
        enabled: bool,
        template: str | None = None,
        params: dict[str, int] | None = None,
        reward_id: uuid.UUID | None = None,
        holdout_pct: int = 0,
        segments: Sequence[str] = (),
    ) -> Journey:
        allowed = DEFAULT_PARAMS[kind]
        given = dict(params or {})
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise InvalidJourney(
                f"{kind.value} takes {', '.join(sorted(allowed)) or 'no params'}, "
                f"not {', '.join(unknown)}"
            )
        if any(value < 0 for value in given.values()):
            raise InvalidJourney("journey params are whole numbers of 0 or more")
        if kind == JourneyKind.thank_you and not 0 < given.get("top_percent", 5) <= 100:
            raise InvalidJourney("top_percent is between 1 and 100")
        if reward_id is not None:
            reward = _reward(session, reward_id)
            if reward is None or reward.programme_id != programme.id:
                raise InvalidJourney(f"no reward {reward_id} in {programme.slug}")
            if RewardType(reward.type) not in COUPON_TYPES:
                raise InvalidJourney("a journey's reward must issue a coupon")
        if segments:
            have = set(
                session.scalars(
                    select(Segment.slug).where(
                        Segment.programme_id == programme.id, Segment.slug.in_(list(segments))
                    )
                )
            )
            unknown_segments = sorted(set(segments) - have)
            if unknown_segments:
                raise InvalidJourney(
                    f"no segment {', '.join(unknown_segments)} in {programme.slug}"
                )
        chosen = template or TEMPLATES[kind]
        known = message_keys()
        # A journey with a second step (inactivity) words it with "<template>_2".
        needed = [chosen] + ([f"{chosen}_2"] if f"{TEMPLATES[kind]}_2" in known else [])
        missing = [t for t in needed if t not in known]
        if missing:
            raise InvalidJourney(
                f"no message template {', '.join(missing)}; "
                f"one of {', '.join(sorted(known))}"
                + (f" (its second step needs {chosen}_2 as well)" if len(needed) > 1 else "")
            )
        row = self.get(session, programme.id, kind)
        if row is None:
            row = self.default(programme.id, kind)
            session.add(row)
        row.enabled = enabled
        row.template = chosen
        row.params = {**allowed, **given}
        row.reward_id = reward_id
        row.holdout_pct = holdout_pct
        row.segments = sorted(set(segments))
        row.updated_at = utc_now()
        session.flush()
        return row

    def enabled(
        self,
        session: Session,
        kinds: Iterable[JourneyKind],
        programme_ids: Iterable[uuid.UUID] | None = None,
    ) -> list[Journey]:
        query = select(Journey).where(
            Journey.enabled.is_(True), Journey.kind.in_([k.value for k in kinds])
        )
        if programme_ids is not None:
            query = query.where(Journey.programme_id.in_(list(programme_ids)))
        return list(session.scalars(query.order_by(Journey.programme_id, Journey.kind)))

    def owned_types(
        self, session: Session, programme_ids: Iterable[uuid.UUID]
    ) -> set[tuple[uuid.UUID, str]]:
        """(programme, outbox type) pairs whose built-in e-mail an enabled journey
        replaces (``OWNS``): one query per planning batch. A journey for some segments
        only replaces nothing: the members outside them still get the built-in e-mail
        (an expiry notice is transactional; a welcome must reach everyone)."""
        wanted = list(set(programme_ids))
        if not wanted:
            return set()
        rows = session.execute(
            select(Journey.programme_id, Journey.kind, Journey.segments).where(
                Journey.enabled.is_(True),
                Journey.kind.in_([k.value for k in OWNS]),
                Journey.programme_id.in_(wanted),
            )
        ).all()
        return {(pid, OWNS[JourneyKind(kind)]) for pid, kind, segments in rows if not segments}

    def quiet_hours(self, session: Session, programme_id: uuid.UUID) -> tuple[str, str]:
        row = session.get(JourneyProgramme, programme_id)
        return (row.quiet_start, row.quiet_end) if row is not None else (QUIET_START, QUIET_END)

    def set_quiet_hours(
        self, session: Session, programme_id: uuid.UUID, *, start: str, end: str
    ) -> JourneyProgramme:
        for value in (start, end):
            try:
                time_of_day(value)
            except ValueError:
                raise InvalidJourney(f"{value!r} is not a time of day (HH:MM)") from None
        row = session.get(JourneyProgramme, programme_id, with_for_update=True)
        if row is None:
            row = JourneyProgramme(programme_id=programme_id)
            session.add(row)
        row.quiet_start, row.quiet_end = start, end
        row.updated_at = utc_now()
        session.flush()
        return row

    def stats(self, session: Session, journey_id: uuid.UUID) -> dict[int, dict[str, int]]:
        """Per step: how many members were treated and held out."""
        rows = session.execute(
            select(JourneyExposure.step, JourneyExposure.arm, func.count())
            .where(JourneyExposure.journey_id == journey_id)
            .group_by(JourneyExposure.step, JourneyExposure.arm)
        ).all()
        out: dict[int, dict[str, int]] = {}
        for step, arm, count in rows:
            out.setdefault(int(step), {a.value: 0 for a in Arm})[str(arm)] = int(count)
        return out

    # --- firing ----------------------------------------------------------------------------

    def fire(
        self,
        session: Session,
        journey: Journey,
        programme: Programme,
        targets: Sequence[Target],
        *,
        now: datetime | None = None,
    ) -> Fired:
        """Reach ``targets`` (members not reached on their occasion yet; the others are
        skipped here, whoever reached them). With segments, only the targets in one of
        them now (one query); the others are left for a later run, when they may be."""
        if targets and journey.segments:
            inside = set(
                session.scalars(
                    members_of(programme_id=programme.id, slugs=journey.segments).where(
                        SegmentMember.member_id.in_({t.member_id for t in targets})
                    )
                )
            )
            targets = [t for t in targets if t.member_id in inside]
        if not targets:
            return Fired(0, 0)
        now = now or utc_now()
        kind = JourneyKind(journey.kind)
        reward = _reward(session, journey.reward_id) if journey.reward_id is not None else None
        rows = []
        by_key: dict[tuple[uuid.UUID, str, int], Target] = {}
        for target in targets:
            arm = Arm.held_out if held_out(target.member_id, journey) else Arm.treated
            by_key[(target.member_id, target.occasion, target.step)] = target
            rows.append(
                {
                    "id": new_id(),
                    "journey_id": journey.id,
                    "programme_id": journey.programme_id,
                    "member_id": target.member_id,
                    "kind": journey.kind,
                    "occasion": target.occasion,
                    "step": target.step,
                    "arm": arm.value,
                    "coupon_id": new_id() if reward is not None and arm == Arm.treated else None,
                    "at": now,
                }
            )
        statement = (
            _insert(session)(_EXPOSURES)
            .on_conflict_do_nothing()
            .returning(
                _EXPOSURES.c.member_id,
                _EXPOSURES.c.occasion,
                _EXPOSURES.c.step,
                _EXPOSURES.c.arm,
                _EXPOSURES.c.coupon_id,
            )
        )
        written = session.connection().execute(statement, rows).all()
        treated = [w for w in written if w.arm == Arm.treated.value]
        if reward is not None:
            gift_coupons(
                session,
                programme=programme,
                reward=reward,
                gifts=[(w.coupon_id, w.member_id) for w in treated],
                now=now,
            )
        not_before = None
        message_kind = "marketing" if kind in MARKETING else "transactional"
        if message_kind == "marketing":
            start, end = self.quiet_hours(session, programme.id)
            not_before = quiet_until(now, programme.timezone, start, end)
        events = []
        for w in treated:
            target = by_key[(w.member_id, w.occasion, w.step)]
            template = journey.template if w.step == 1 else f"{journey.template}_{w.step}"
            events.append(
                CampaignMessage(
                    programme_id=programme.id,
                    member_id=w.member_id,
                    occurred_at=now,
                    source="journey",
                    source_id=journey.id,
                    kind=journey.kind,
                    step=w.step,
                    occasion=w.occasion,
                    template=template,
                    message_kind=message_kind,
                    dedupe_key=occasion_key(programme.id, kind, w.occasion, w.step, w.member_id),
                    not_before=not_before,
                    reward_id=reward.id if reward is not None else None,
                    coupon_id=w.coupon_id,
                    **target.facts,
                )
            )
        outbox.record(session, *events)
        return Fired(len(treated), len(written) - len(treated))


def occasion_key(
    programme_id: uuid.UUID, kind: JourneyKind, occasion: str, step: int, member_id: uuid.UUID
) -> str:
    """``journey:<programme>:birthday:2027:<member>`` (with ``:<step>`` after the first)."""
    suffix = f":{step}" if step > 1 else ""
    return f"journey:{programme_id}:{kind.value}:{occasion}{suffix}:{member_id}"


journeys = JourneyService()
