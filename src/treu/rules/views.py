"""What conditions see: the event, its lines and the member, as frozen plain values.

The functions the compiler generates (``treu.rules.compile``) read ``event.*``,
``line.*`` and ``member.*`` as plain attribute reads on these objects, so each view
carries every field its record in the rule scope declares (``EVENT``, ``LINE`` and
``MEMBER`` in ``treu.rules.spec``), already worked out.

The callers build them (ingest, the checkout preview, returns, challenges) from whatever
they have loaded; there is no database behind a view. Everything that depends on the
programme's time zone (weekday, hour and date of the event, days since enrolment, the
birthday month) is worked out once, here, when the view is built: conditions then
compare plain integers and dates, and evaluation never reads a clock, so the same cart
earns the same points at the checkout and when the purchase arrives.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LineView:
    """One cart line as conditions see it (``line.*``)."""

    sku: str
    name: str | None
    category: str | None
    quantity: int
    unit_price_minor: int
    total_minor: int
    tags: tuple[str, ...]

    @classmethod
    def of(
        cls,
        sku: str,
        *,
        unit_price_minor: int,
        quantity: int = 1,
        total_minor: int | None = None,
        name: str | None = None,
        category: str | None = None,
        tags: Iterable[str] = (),
    ) -> LineView:
        """``total_minor`` defaults to quantity x unit price (what purchases earn on)."""
        total = quantity * unit_price_minor if total_minor is None else total_minor
        return cls(sku, name, category, quantity, unit_price_minor, total, tuple(tags))


@dataclass(frozen=True, slots=True)
class EventView:
    """The event as conditions see it (``event.*``), plus its lines and time."""

    type: str
    channel: str | None
    store: str | None
    currency: str | None
    total_minor: int
    item_count: int
    line_count: int
    weekday: int
    hour: int
    date: dt.date
    attrs: Mapping[str, Any]
    lines: tuple[LineView, ...]
    occurred_at: dt.datetime

    @classmethod
    def purchase(
        cls,
        *,
        occurred_at: dt.datetime,
        timezone: str,
        currency: str,
        lines: Sequence[LineView],
        channel: str | None = None,
        store: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        type: str = "purchase",
    ) -> EventView:
        """A purchase (or a cart at the checkout): totals come from the lines, weekday,
        hour and date from ``occurred_at`` in the programme's ``timezone``."""
        local = _local(occurred_at, timezone)
        return cls(
            type=type,
            channel=channel,
            store=store,
            currency=currency,
            total_minor=sum(line.total_minor for line in lines),
            item_count=sum(line.quantity for line in lines),
            line_count=len(lines),
            weekday=local.isoweekday(),
            hour=local.hour,
            date=local.date(),
            attrs=attrs if attrs is not None else _EMPTY,
            lines=tuple(lines),
            occurred_at=occurred_at,
        )

    @classmethod
    def engagement(
        cls,
        type: str,
        *,
        occurred_at: dt.datetime,
        timezone: str,
        attrs: Mapping[str, Any] | None = None,
        channel: str | None = None,
        store: str | None = None,
    ) -> EventView:
        """An engagement event (``review_submitted``, ...): no lines, no amount."""
        local = _local(occurred_at, timezone)
        return cls(
            type=type,
            channel=channel,
            store=store,
            currency=None,
            total_minor=0,
            item_count=0,
            line_count=0,
            weekday=local.isoweekday(),
            hour=local.hour,
            date=local.date(),
            attrs=attrs if attrs is not None else _EMPTY,
            lines=(),
            occurred_at=occurred_at,
        )

    def with_lines(self, kept: Sequence[int]) -> EventView:
        """The same event with only the lines at ``kept`` (indices into ``lines``):
        what the kept part of a partly returned order would have earned."""
        lines = tuple(self.lines[i] for i in kept)
        removed = sum(line.total_minor for line in self.lines) - sum(
            line.total_minor for line in lines
        )
        return EventView(
            type=self.type,
            channel=self.channel,
            store=self.store,
            currency=self.currency,
            total_minor=self.total_minor - removed,
            item_count=sum(line.quantity for line in lines),
            line_count=len(lines),
            weekday=self.weekday,
            hour=self.hour,
            date=self.date,
            attrs=self.attrs,
            lines=lines,
            occurred_at=self.occurred_at,
        )


@dataclass(frozen=True, slots=True)
class MemberView:
    """The member as conditions see it (``member.*``)."""

    tier: str | None
    segments: frozenset[str]
    days_enrolled: int
    birthday_month: bool
    language: str | None
    channel: str | None
    attrs: Mapping[str, Any]
    known: bool
    id: str | None = None
    """The member's id as text (``bucket(member.id, …)``, member lists)."""

    @classmethod
    def of(
        cls,
        *,
        at: dt.datetime,
        timezone: str,
        id: uuid.UUID | str | None = None,
        enrolled_at: dt.datetime | None = None,
        birthday: dt.date | None = None,
        tier: str | None = None,
        segments: Iterable[str] = (),
        language: str | None = None,
        channel: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> MemberView:
        """A known member as of ``at`` (the event time): days since enrolment and the
        birthday month are counted in the programme's ``timezone``."""
        local = _local(at, timezone).date()
        days = 0
        if enrolled_at is not None:
            days = max((local - _local(enrolled_at, timezone).date()).days, 0)
        return cls(
            tier=tier,
            segments=frozenset(segments),
            days_enrolled=days,
            birthday_month=birthday is not None and birthday.month == local.month,
            language=language,
            channel=channel,
            attrs=attrs if attrs is not None else _EMPTY,
            known=True,
            id=str(id) if id is not None else None,
        )

    @classmethod
    def anonymous(cls) -> MemberView:
        """A cart without a member (the checkout shows what it would earn)."""
        return cls(None, frozenset(), 0, False, None, None, _EMPTY, False)


def _local(at: dt.datetime, timezone: str) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("datetime must carry a time zone")
    return at.astimezone(ZoneInfo(timezone))
