"""The ledger: every change of a member's points goes through ``LedgerWriter``.

Rules the writer keeps (and ``verify`` checks):

1. A posting is never changed after it is written; ``sum(postings.points)`` is the
   member's total balance, ``available + pending``.
2. Earned points form lots. ``lot.remaining = lot.amount + sum(allocations)``, where the
   allocations in ``posting_lots`` are what redemptions, reversals, expiry and debt
   settlement took from the lot, and what a refund gave back to it (a positive
   allocation, never more than the refunded spend took from that lot).
3. ``pending`` = remaining points in pending lots; the remaining points in available lots
   equal ``max(available, 0)``. A negative available balance (points already spent, then
   the purchase was returned) is paid off by the next points that become available.
4. Every change to a member's lots or account happens while holding that member's
   account row lock (``SELECT ... FOR UPDATE``; on SQLite the database write lock), and
   accounts are locked in member-id order, so concurrent writers never deadlock and never
   double-spend.

The writer works on in-memory state and writes it with a handful of bulk statements in
``flush`` — this is what lets a batch of 1,000 purchases cost a few round trips.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Uuid,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from treu.db.base import fetch
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.time import utc_now
from treu.ledger.errors import (
    AccountNotFound,
)
from treu.ledger.models import (
    Account,
    LedgerAdjustment,
    Lot,
    LotState,
    Posting,
    PostingKind,
    PostingLot,
)
from treu.ledger.records import LOT_VIEW, LotView
from treu.ledger.records import AccountState as AccountState
from treu.ledger.records import PostingRecord as PostingRecord
from treu.ledger.records import rule_of as rule_of
from treu.ledger.writer import EXPIRING_NOTICE_DAYS as EXPIRING_NOTICE_DAYS
from treu.ledger.writer import LedgerWriter as LedgerWriter
from treu.outbox.events import (
    PointsExpiring,
)
from treu.outbox.service import outbox

_BALANCE = select(Account.available, Account.pending, Account.lifetime_earned).where(
    Account.member_id == bindparam("member_id", type_=Uuid())
)


def _next_by(column: Any, *condition: Any) -> Any:
    """The open points of a member per instant of ``column``, soonest first, as many
    instants as ``n`` (index ``ix_lots_member_open`` or the few pending lots): the work
    stays small however long the member's history."""
    return (
        # sum() of a bigint is a numeric on PostgreSQL, a Decimal in Python, which the
        # checkout's answer could not serialise: cast back to the column's integer.
        select(
            literal(column.key).label("what"),
            column.label("at"),
            cast(func.sum(Lot.remaining), BigInteger).label("points"),
        )
        .where(
            Lot.member_id == bindparam("member_id", type_=Uuid()),
            Lot.remaining > 0,
            column.is_not(None),
            *condition,
        )
        .group_by(column)
        .order_by(column)
        .limit(bindparam("n", type_=Integer()))
        .subquery()
    )


_NEXT_LOTS = union_all(
    select(_next_by(Lot.expires_at)),
    select(_next_by(Lot.available_at, Lot.state == LotState.pending.value)),
)
"""The next expiries (any open lot) and the next releases (pending lots) in one round
trip."""


# --- read side -------------------------------------------------------------------------


@dataclass
class Expiring:
    points: int
    expires_at: datetime


@dataclass
class Balance:
    member_id: uuid.UUID
    available: int
    pending: int
    lifetime_earned: int
    expiring: list[Expiring]
    next_available: list[Expiring]


@dataclass
class LedgerPage:
    items: list[Posting]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """A posting as the member's own history shows it: with when its points become
    available (``pending_until``; ``None`` when they are available, or it spent points)."""

    posting: Posting
    pending_until: datetime | None


@dataclass
class Statement:
    items: list[StatementLine]
    next_cursor: str | None


@dataclass
class Discrepancy:
    member_id: uuid.UUID | None
    """``None`` only for the lines of an anonymous purchase
    (``treu.events.integrity.check_references``)."""
    what: str
    cached: int
    rebuilt: int


def in_programme(column: Any, programme_id: uuid.UUID | None) -> list[Any]:
    """The condition that limits a check to one programme (none for all programmes)."""
    return [] if programme_id is None else [column == programme_id]


def counted(session: Session, checks: dict[str, Any]) -> list[Discrepancy]:
    """Run ``checks`` — what is wrong → a query of (member id, rows that are so) — and
    report each count as a discrepancy (``cached``: the rows; nothing to rebuild)."""
    return [
        Discrepancy(member_id, what, int(count), 0)
        for what, query in checks.items()
        for member_id, count in session.execute(query).all()
    ]


class LedgerService:
    def writer(self, session: Session, *, now: datetime | None = None) -> LedgerWriter:
        return LedgerWriter(session, now=now)

    def balance(
        self, session: Session, *, member_id: uuid.UUID, expiring_limit: int = 5
    ) -> Balance:
        """Balance plus the next ``expiring_limit`` expiries and pending releases: two
        indexed queries (one when no expiries are asked for)."""
        connection = session.connection()
        found = fetch(connection, _BALANCE, {"member_id": member_id})
        if not found:
            raise AccountNotFound(f"no points account for member {member_id}")
        account = found[0]
        expiring: list[Expiring] = []
        releases: list[Expiring] = []
        if expiring_limit > 0:
            params = {"member_id": member_id, "n": expiring_limit}
            for what, at, points in fetch(connection, _NEXT_LOTS, params):
                (expiring if what == "expires_at" else releases).append(Expiring(points, at))
            expiring.sort(key=lambda item: item.expires_at)
            releases.sort(key=lambda item: item.expires_at)
        available, pending, lifetime_earned = account
        return Balance(
            member_id=member_id,
            available=available,
            pending=pending,
            lifetime_earned=lifetime_earned,
            expiring=expiring,
            next_available=releases,
        )

    def history(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        limit: int = 20,
        cursor: str | None = None,
        include_settle: bool = True,
    ) -> LedgerPage:
        """Postings newest first, keyset-paginated on the time-ordered posting id."""
        query = select(Posting).where(Posting.member_id == member_id)
        if not include_settle:
            query = query.where(Posting.kind != PostingKind.settle.value)
        if cursor:
            key = decode_cursor(cursor)
            query = query.where(Posting.id < uuid.UUID(str(key.get("before"))))
        rows = list(session.scalars(query.order_by(Posting.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1].id)})
        return LedgerPage(items=rows, next_cursor=next_cursor)

    def statement(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Statement:
        """The member's history as the portal shows it: postings newest first (no
        ``settle`` postings, which move no points), each with when its still-pending
        points become available. One statement per page whatever the history's length:
        the release date is a correlated look-up in the member's open lots
        (``ix_lots_member_open``), not a query per posting."""
        released = (
            select(func.max(Lot.available_at))
            .where(
                Lot.member_id == member_id,
                Lot.posting_id == Posting.id,
                Lot.state == LotState.pending.value,
                Lot.remaining > 0,
            )
            .correlate(Posting)
            .scalar_subquery()
        )
        query = select(Posting, released).where(
            Posting.member_id == member_id, Posting.kind != PostingKind.settle.value
        )
        if cursor:
            key = decode_cursor(cursor)
            query = query.where(Posting.id < uuid.UUID(str(key.get("before"))))
        rows = session.execute(query.order_by(Posting.id.desc()).limit(limit + 1)).all()
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1][0].id)})
        return Statement(
            items=[StatementLine(posting, until) for posting, until in rows],
            next_cursor=next_cursor,
        )

    def activate_due(
        self, session: Session, *, now: datetime | None = None, limit: int = 500
    ) -> int:
        """Make pending lots whose return window has passed available. Returns the number
        of lots activated; call until it returns 0. Safe to run twice or concurrently:
        lots are re-read under the account lock and only pending ones change."""
        now = now or utc_now()
        member_ids = list(
            session.scalars(
                select(Lot.member_id)
                .where(Lot.state == LotState.pending.value, Lot.available_at <= now)
                .group_by(Lot.member_id)
                .limit(limit)
            )
        )
        if not member_ids:
            return 0
        writer = self.writer(session, now=now)
        writer.lock(member_ids)
        rows = session.execute(
            select(*LOT_VIEW).where(
                Lot.member_id.in_(member_ids),
                Lot.state == LotState.pending.value,
                Lot.available_at <= now,
            )
        ).all()
        count = 0
        for row in rows:
            lot = LotView(*row)
            account = writer.accounts[lot.member_id]
            lots = writer._lots(account)
            existing = next((x for x in lots if x.id == lot.id), None)
            if existing is None:  # fully reversed while pending: no points to release
                lots.append(lot)
                existing = lot
            writer.activate(account, existing)
            count += 1
        writer.flush()
        return count

    def expire_due(self, session: Session, *, now: datetime | None = None, limit: int = 500) -> int:
        """Expire lots past ``expires_at``: one ``expire`` posting per lot. Idempotent."""
        now = now or utc_now()
        member_ids = list(
            session.scalars(
                select(Lot.member_id)
                .where(Lot.remaining > 0, Lot.expires_at.is_not(None), Lot.expires_at <= now)
                .group_by(Lot.member_id)
                .limit(limit)
            )
        )
        if not member_ids:
            return 0
        writer = self.writer(session, now=now)
        writer.lock(member_ids)
        count = 0
        for member_id in sorted(member_ids):
            account = writer.accounts[member_id]
            for lot in list(writer._lots(account)):
                if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0:
                    if writer.expire(account, lot) is not None:
                        count += 1
        writer.flush()
        return count

    def warn_expiring(
        self,
        session: Session,
        *,
        now: datetime | None = None,
        after: uuid.UUID | None = None,
        limit: int = 500,
        days: int = EXPIRING_NOTICE_DAYS,
    ) -> tuple[int, uuid.UUID | None]:
        """Record ``points.expiring`` for points that expire within ``days``: one event
        per member and expiry instant, keyed so that running again records nothing new.
        Walks members in id order from ``after``; returns the notices looked at and the
        last member id (None: done)."""
        now = now or utc_now()
        due = (
            Lot.remaining > 0,
            Lot.expires_at.is_not(None),
            Lot.expires_at > now,
            Lot.expires_at <= now + timedelta(days=days),
        )
        page = select(Lot.member_id).where(*due).group_by(Lot.member_id)
        if after is not None:
            page = page.where(Lot.member_id > after)
        member_ids = list(session.scalars(page.order_by(Lot.member_id).limit(limit)))
        if not member_ids:
            return 0, None
        rows = session.execute(
            select(Lot.member_id, Lot.programme_id, Lot.expires_at, func.sum(Lot.remaining))
            .where(Lot.member_id.in_(member_ids), *due)
            .group_by(Lot.member_id, Lot.programme_id, Lot.expires_at)
        ).all()
        outbox.record(
            session,
            *(
                PointsExpiring(
                    programme_id=programme_id,
                    member_id=member_id,
                    occurred_at=now,
                    points=int(points),
                    expires_at=expires_at,
                )
                for member_id, programme_id, expires_at, points in rows
                if expires_at is not None  # (the query's condition; for the type checker)
            ),
        )
        return len(rows), member_ids[-1]

    def verify(
        self, session: Session, *, programme_id: uuid.UUID | None = None
    ) -> list[Discrepancy]:
        """Rebuild every balance from postings and lots and report what differs.

        * total: ``sum(postings.points)`` must equal ``available + pending``;
        * pending: the remaining points of pending lots (each lot's remaining itself
          rebuilt from ``amount + allocations``);
        * available lots must hold exactly ``max(available, 0)`` points;
        * copied ids (``check_references``) must agree with the row they were copied from.
        """
        out: list[Discrepancy] = self.check_references(session, programme_id=programme_id)
        totals = dict(
            session.execute(
                select(Posting.member_id, func.coalesce(func.sum(Posting.points), 0))
                .group_by(Posting.member_id)
                .where(*in_programme(Posting.programme_id, programme_id))
            ).all()
        )
        alloc_sum = (
            select(PostingLot.lot_id, func.sum(PostingLot.points).label("taken"))
            .group_by(PostingLot.lot_id)
            .subquery()
        )
        rebuilt_remaining = Lot.amount + func.coalesce(alloc_sum.c.taken, 0)
        bad_lots = session.execute(
            select(Lot.member_id, Lot.remaining, rebuilt_remaining)
            .outerjoin(alloc_sum, alloc_sum.c.lot_id == Lot.id)
            .where(Lot.remaining != rebuilt_remaining)
            .where(*in_programme(Lot.programme_id, programme_id))
        ).all()
        for member_id, cached, rebuilt in bad_lots:
            out.append(Discrepancy(member_id, "lot remaining", cached, rebuilt))
        lot_sums: dict[tuple[uuid.UUID, str], int] = {
            (m, s): int(v)
            for m, s, v in session.execute(
                select(Lot.member_id, Lot.state, func.sum(rebuilt_remaining))
                .outerjoin(alloc_sum, alloc_sum.c.lot_id == Lot.id)
                .where(*in_programme(Lot.programme_id, programme_id))
                .group_by(Lot.member_id, Lot.state)
            ).all()
        }
        for member_id, available, pending in session.execute(
            select(Account.member_id, Account.available, Account.pending).where(
                *in_programme(Account.programme_id, programme_id)
            )
        ).all():
            total = int(totals.get(member_id, 0))
            if available + pending != total:
                out.append(Discrepancy(member_id, "total", available + pending, total))
            rebuilt_pending = lot_sums.get((member_id, LotState.pending.value), 0)
            if pending != rebuilt_pending:
                out.append(Discrepancy(member_id, "pending", pending, rebuilt_pending))
            in_available = lot_sums.get((member_id, LotState.available.value), 0)
            if max(available, 0) != in_available:
                out.append(
                    Discrepancy(member_id, "available lots", max(available, 0), in_available)
                )
        return out

    def check_references(
        self, session: Session, *, programme_id: uuid.UUID | None = None
    ) -> list[Discrepancy]:
        """Rows whose copied member, programme or event ids disagree with the row they were
        copied from: those copies carry no foreign key (migration 0007), so this is the
        check that they are right; and postings of a manual adjustment made for another
        member or programme than the adjustment's. ``cached`` counts the rows that
        disagree."""
        mine = in_programme(Account.programme_id, programme_id)
        checks = {
            "posting's programme": select(Posting.member_id, func.count())
            .join(Account, Account.member_id == Posting.member_id)
            .where(Posting.programme_id != Account.programme_id, *mine)
            .group_by(Posting.member_id),
            "lot's member, programme or event": select(Posting.member_id, func.count())
            .join(Lot, Lot.posting_id == Posting.id)
            .join(Account, Account.member_id == Posting.member_id)
            .where(
                or_(
                    Lot.member_id != Posting.member_id,
                    Lot.programme_id != Posting.programme_id,
                    Lot.event_id.is_distinct_from(Posting.event_id),
                ),
                *mine,
            )
            .group_by(Posting.member_id),
            "allocation's member": select(Lot.member_id, func.count())
            .join(PostingLot, PostingLot.lot_id == Lot.id)
            .join(Account, Account.member_id == Lot.member_id)
            .where(PostingLot.member_id != Lot.member_id, *mine)
            .group_by(Lot.member_id),
            "posting's adjustment of another member": select(Posting.member_id, func.count())
            .join(LedgerAdjustment, LedgerAdjustment.id == Posting.event_id)
            .join(Account, Account.member_id == Posting.member_id)
            .where(
                or_(
                    LedgerAdjustment.member_id != Posting.member_id,
                    LedgerAdjustment.programme_id != Posting.programme_id,
                ),
                *mine,
            )
            .group_by(Posting.member_id),
        }
        return counted(session, checks)

    def repair(self, session: Session, *, member_ids: Sequence[uuid.UUID]) -> None:
        """Rewrite cached balances from postings (after ``verify`` found a difference)."""
        for member_id in member_ids:
            total = (
                session.scalar(
                    select(func.coalesce(func.sum(Posting.points), 0)).where(
                        Posting.member_id == member_id
                    )
                )
                or 0
            )
            pending = (
                session.scalar(
                    select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                        Lot.member_id == member_id, Lot.state == LotState.pending.value
                    )
                )
                or 0
            )
            session.execute(
                update(Account)
                .where(Account.member_id == member_id)
                .values(available=int(total) - int(pending), pending=int(pending))
            )


ledger = LedgerService()
