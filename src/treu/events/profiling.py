"""Progressive profiling: the profile fields a member is asked for one at a time, what
giving one earns, and saving a profile so that a field given for the first time earns
as the API's ``profile_completed`` event does.

The order is the one members are most willing to give (share of members who would give
each, in the surveys behind the feature: birthday 70 %, phone 52 %, size 52 %; the
preferences last). Earning goes through ``profile_completed`` events ingested like any
other (``POST /v1/events``): the programme's published earning rules decide the points,
their limits hold (the demo's rule pays 200 points once in a member's lifetime), and
each event's id is ``profile:<member id>:<field>`` — giving a field again, removing and
re-entering it, or sending the form twice is a replay that credits nothing.

Size and preferences live in the member's ``attributes`` (``{"size": "M",
"preferences": ["coffee", "organic"]}``), where ``PATCH /v1/members/{id}`` merges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.events.models import Event
from treu.events.schemas import EngagementEvent
from treu.events.service import events_service
from treu.kit.time import local_date, utc_now
from treu.members.models import Member, MemberStatus
from treu.members.schemas import MemberRef, MemberUpdate
from treu.members.service import MemberKey, members
from treu.programmes.models import Programme
from treu.rules.service import Usage, member_view, rules
from treu.rules.views import EventView
from treu.tiers.models import MemberTier

FIELDS = ("birthday", "phone", "size", "preferences")
"""The fields progressive profiling asks for, in the order it asks."""
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
PREFERENCES = ("coffee", "organic", "bakery", "drinks", "cosmetics", "apparel")
"""What a member may say they are interested in (``attributes.preferences``)."""
TRIGGER = "profile_completed"
EVENT_CHANNEL = "web"


def value_of(member: Member, field: str) -> Any:
    if field in ("birthday", "phone"):
        return getattr(member, field)
    return member.attributes.get(field) or None


def missing(member: Member) -> list[str]:
    """The profiling fields the member has not given, in the order they are asked."""
    return [field for field in FIELDS if value_of(member, field) in (None, "", [])]


def event_key(member: Member, field: str) -> str:
    return f"profile:{member.id}:{field}"


@dataclass(frozen=True, slots=True)
class Ask:
    """The one field to ask the member for now, and what giving it earns."""

    field: str
    points: int


@dataclass(frozen=True, slots=True)
class Saved:
    member: Member
    completed: tuple[str, ...]
    """Fields given for the first time by this change."""
    earned: int
    """Points those ``profile_completed`` events credited."""


class ProfilingService:
    def next_ask(
        self,
        session: Session,
        *,
        member: Member,
        programme: Programme,
        now: datetime | None = None,
    ) -> Ask | None:
        """The first missing field with the points it would earn now (None: the profile
        is complete)."""
        gaps = missing(member)
        if not gaps:
            return None
        field = gaps[0]
        points = self.points_for(session, member=member, programme=programme, field=field, now=now)
        return Ask(field, points)

    def points_for(
        self,
        session: Session,
        *,
        member: Member,
        programme: Programme,
        field: str,
        now: datetime | None = None,
    ) -> int:
        """What a ``profile_completed`` event for ``field`` would credit the member now:
        the published rules evaluated with the member's limit counters, nothing written.
        0 when the field was rewarded before (its event is stored) or the member may not
        earn (blocked)."""
        now = now or utc_now()
        if member.status != MemberStatus.active.value:
            return 0
        given_before = session.scalar(
            select(Event.id).where(
                Event.programme_id == programme.id, Event.key == event_key(member, field)
            )
        )
        if given_before is not None:
            return 0
        active = rules.active(session, programme)
        if TRIGGER not in active.rule_set.triggers:
            return 0
        day = local_date(now, programme.timezone)
        usage = Usage(session, dict(active.limited))
        usage.load([(member.id, day)], lock_budgets=False)
        state = session.get(MemberTier, member.id)
        view = EventView.engagement(
            TRIGGER,
            occurred_at=now,
            timezone=programme.timezone,
            attrs={"field": field},
            channel=EVENT_CHANNEL,
        )
        mview = member_view(
            MemberKey.of(member), programme, now, tier=state.tier if state is not None else None
        )
        return active.rule_set.evaluate(view, mview, usage.view(member.id, day)).points

    def save(
        self,
        session: Session,
        *,
        member: Member,
        programme: Programme,
        data: MemberUpdate,
        now: datetime | None = None,
    ) -> Saved:
        """``members.update`` (as ``PATCH /v1/members/{id}``), then one ``profile_completed``
        event per profiling field that was empty and now is not, ingested in the same
        unit of work: the profile and its points are saved together or not at all."""
        now = now or utc_now()
        before = set(missing(member))
        members.update(session, member=member, data=data)
        completed = tuple(f for f in FIELDS if f in before and f not in missing(member))
        # A field removed and given again was rewarded before: its event is stored, and
        # sending it again (with another time) would be refused as a different payload.
        rewarded = set(
            session.scalars(
                select(Event.key).where(
                    Event.programme_id == programme.id,
                    Event.key.in_([event_key(member, f) for f in completed]),
                )
            )
            if completed
            else ()
        )
        earned = 0
        fresh = [f for f in completed if event_key(member, f) not in rewarded]
        if fresh:
            events = [
                EngagementEvent(
                    id=event_key(member, field),
                    type=TRIGGER,
                    programme=programme.slug,
                    member=MemberRef(member_id=member.id),
                    occurred_at=now,
                    channel=EVENT_CHANNEL,
                    attributes={"field": field},
                )
                for field in fresh
            ]
            for outcome in events_service.ingest(session, list(events), now=now):
                if outcome.error is not None:
                    raise outcome.error
                if outcome.status == 201 and outcome.body is not None:
                    earned += outcome.body.points.earned
        return Saved(member, completed, earned)


profiling = ProfilingService()
