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
import threading
import uuid
from collections import namedtuple
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Date, Integer, Uuid, bindparam, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.db.base import Named, WriteBatch, fetch
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import local_date, utc_now
from treu.ledger.models import Account
from treu.members.errors import MemberNotFound
from treu.members.models import Member, MemberStatus
from treu.programmes.models import Programme, TierMetric, TierWindow
from treu.programmes.schemas import TierSettingsPatch
from treu.programmes.service import programmes
from treu.tiers import maths
from treu.tiers.book import TierBook
from treu.tiers.common import EMPTY, TierInfo
from treu.tiers.errors import (
    TierExists,
    TierNotFound,
    TierNotPurchasable,
    TierOrder,
    UnknownTier,
)
from treu.tiers.maths import Ladder, TierDef
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

# --------------------------------------------------------------------------- service


_ACTIVITY = select(
    TierActivity.day, TierActivity.points, TierActivity.spend_minor, TierActivity.purchases
).where(
    TierActivity.member_id == bindparam("member_id", type_=Uuid()),
    TierActivity.day >= bindparam("start", type_=Date()),
)
"""A member's counted days from a date on (a page's tier status: prebuilt, ``fetch``)."""

_READ: Any = object()
"""``status``'s default ``state``: read the member's tier state itself."""

MemberRow = namedtuple(
    "MemberRow",
    "id programme_id status email phone card_number external_id first_name last_name "
    "birthday language enrolled_at",
)
"""The member's columns a page shows (``member_with_programme``)."""

TierStateRow = namedtuple(
    "TierStateRow", "qualified_tier paid_tier paid_until since grace_started_on"
)
"""The tier state ``status`` reads (``MemberTier``'s columns of the same names)."""


class MemberPage(NamedTuple):
    member: Any  # a MemberRow: ``status`` and the offers read the Member's attributes
    programme: Programme
    state: TierStateRow | None


def _member_page() -> Any:
    return (
        select(
            *(getattr(Member, name) for name in MemberRow._fields),
            Programme.slug,
            *(getattr(MemberTier, name) for name in TierStateRow._fields),
        )
        .join(Programme, Programme.id == Member.programme_id)
        .outerjoin(MemberTier, MemberTier.member_id == Member.id)
        .where(Member.id == bindparam("member_id", type_=Uuid()))
    )


_MEMBER_PAGE = Named("MemberPageRow", _member_page)
_MEMBER_COLUMNS = len(MemberRow._fields)


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
        return TierBook(session, self, now=now)

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

    def member_with_programme(self, session: Session, member_id: uuid.UUID) -> MemberPage:
        """The member's columns, their programme (``programmes.cached_by_slug``) and their
        tier state, for a page that shows ``status``: one prebuilt statement read as named
        tuples. Loading the three rows as ORM objects was a fifth of the portal home's CPU.
        Pass ``programme`` and ``state`` on to ``status``."""
        found = _MEMBER_PAGE.first(session.connection(), member_id=member_id)
        if found is None:
            raise MemberNotFound(f"no member {member_id}")
        slug = found[_MEMBER_COLUMNS]
        programme = programmes.cached_by_slug(session, {slug})[slug]
        member = MemberRow._make(found[:_MEMBER_COLUMNS])
        tier = found[_MEMBER_COLUMNS + 1 :]
        state = TierStateRow._make(tier) if tier[3] is not None else None
        return MemberPage(member, programme, state)

    def status(
        self,
        session: Session,
        *,
        member: Member,
        lang: str = "en",
        now: datetime | None = None,
        programme: Programme | None = None,
        state: Any = _READ,
    ) -> MemberTierOut:
        """Everything ``GET /v1/members/{id}/tier`` shows. A caller that has read the
        member's ``programme`` and tier ``state`` (``member_with_programme``) passes them."""
        now = now or utc_now()
        if programme is None:
            programme = session.get_one(Programme, member.programme_id)
        ladder = self.ladder(session, programme)
        metric = TierMetric(programme.tier_metric)
        window = TierWindow(programme.tier_window)
        today = local_date(now, programme.timezone)
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
        if state is _READ:
            state = session.get(MemberTier, member.id)
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
        rows = fetch(session.connection(), _ACTIVITY, {"member_id": member_id, "start": start})
        return maths.activity_of(rows)

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
        items = [(entry, _history_text(entry, lang)) for entry in rows[:limit]]
        next_cursor = encode_cursor({"id": str(rows[limit - 1].id)}) if len(rows) > limit else None
        return items, next_cursor

    def recent_history(
        self, session: Session, *, member_id: uuid.UUID, limit: int, lang: str
    ) -> list[tuple[Any, str]]:
        """``history``'s first page for a page to show: (entry, text) pairs, each entry a
        named tuple with ``at`` (one prebuilt statement, no cursor)."""
        rows = _RECENT_HISTORY.rows(session.connection(), member_id=member_id, limit=limit)
        return [(entry, _history_text(entry, lang)) for entry in rows]

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
        book = TierBook(session, self, now=now)
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

    def members_per_tier(
        self, session: Session, programme: Programme, *, now: datetime | None = None
    ) -> dict[str | None, int]:
        """How many members (not closed) hold each tier now, by code (None: no tier), as
        ``current`` decides it — the higher of the qualified and a still-valid bought tier,
        the base tier without a tier row — in ONE grouped query."""
        now = now or utc_now()
        ladder = self.ladder(session, programme)
        no_row = MemberTier.member_id.is_(None)
        rows = session.execute(
            select(
                no_row,
                MemberTier.qualified_tier,
                MemberTier.paid_tier,
                func.count(),
                func.count().filter(MemberTier.paid_until > now),
            )
            .select_from(Member)
            .outerjoin(MemberTier, MemberTier.member_id == Member.id)
            .where(
                Member.programme_id == programme.id,
                Member.status != MemberStatus.closed.value,
            )
            .group_by(no_row, MemberTier.qualified_tier, MemberTier.paid_tier)
        ).all()
        counts: dict[str | None, int] = {}

        def add(code: str | None, count: int) -> None:
            if count:
                code = code if ladder.get(code) is not None else None
                counts[code] = counts.get(code, 0) + count

        base = ladder.base
        for without_row, qualified, paid, count, paid_valid in rows:
            if without_row:
                add(base.code if base is not None else None, int(count))
                continue
            add(ladder.higher(qualified, paid), int(paid_valid))
            add(qualified, int(count) - int(paid_valid))
        return counts

    def programmes_with_tiers(self, session: Session) -> list[Programme]:
        return list(
            session.scalars(
                select(Programme).where(Programme.tiers_version > 0).order_by(Programme.slug)
            )
        )


def _history_text(entry: Any, lang: str) -> str:
    """A tier history entry's text in ``lang`` (stored in English)."""
    if lang == "en":
        return str(entry.text)
    details = entry.details or {}
    return history_text(
        str(details.get("template", entry.reason)), details.get("params") or {}, lang
    )


_RECENT_HISTORY = Named(
    "TierHistoryRow",
    lambda: (
        select(TierHistory.at, TierHistory.text, TierHistory.reason, TierHistory.details)
        .where(TierHistory.member_id == bindparam("member_id", type_=Uuid()))
        .order_by(TierHistory.id.desc())
        .limit(bindparam("limit", type_=Integer()))
    ),
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
