"""``LedgerWriter``: every change of a member's points in one unit of work — postings,
lots and their allocations, account balances and the ``points.*`` domain events —
written together in ``flush``."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.db.base import Lookup, WriteBatch, lookup, table_of
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.ledger.errors import (
    AccountNotFound,
    InsufficientPoints,
    PostingNotFound,
    PostingNotRefundable,
    RefundExceedsPosting,
)
from treu.ledger.explain import render
from treu.ledger.models import Account, Lot, LotState, Posting, PostingKind, PostingLot
from treu.ledger.records import LOT_VIEW, AccountState, LotView, PostingRecord
from treu.outbox.events import (
    PointsActivated,
    PointsAdjusted,
    PointsChanged,
    PointsEarned,
    PointsExpired,
    PointsPending,
    PointsRedeemed,
    PointsRefunded,
    PointsReversed,
)
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.programmes.service import programmes


def _account_lock(*, skip_locked: bool) -> Lookup:
    return lookup(
        lambda condition: (
            select(
                Account.member_id,
                Account.programme_id,
                Account.available,
                Account.pending,
                Account.lifetime_earned,
            )
            .where(condition)
            .order_by(Account.member_id)
            .with_for_update(skip_locked=skip_locked)
        ),
        Account.member_id,
    )


_LOCK_ACCOUNTS = _account_lock(skip_locked=False)
_TRY_LOCK_ACCOUNTS = _account_lock(skip_locked=True)
_UUID_INT = operator.attrgetter("int")


@dataclass
class _Original:
    member_id: uuid.UUID
    kind: str
    points: int


@dataclass
class _Pending:
    postings: list[dict[str, Any]] = field(default_factory=list)
    lots: list[dict[str, Any]] = field(default_factory=list)
    allocations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Note:
    """What one kind of change did to one member's points for one cause, so far."""

    programme_id: uuid.UUID
    event_id: uuid.UUID | None
    correlation_id: uuid.UUID | None
    points: int = 0
    available_at: datetime | None = None


EXPIRING_NOTICE_DAYS = 30
"""How long before their expiry ``points.expiring`` announces points (the
``ledger.warn_expiring`` job)."""

_NoteKey = tuple[type[PointsChanged], uuid.UUID, uuid.UUID | None]
_SPENT: dict[str, type[PointsChanged]] = {
    PostingKind.redeem: PointsRedeemed,
    PostingKind.adjust: PointsAdjusted,
}


class LedgerWriter:
    """Accumulates ledger changes for one unit of work and writes them in ``flush``,
    with the domain events they make (``points.*``, one per member, kind and cause: a
    purchase earning by three rules is one ``points.earned`` of the sum)."""

    def __init__(self, session: Session, *, now: datetime | None = None) -> None:
        self.session = session
        self.now = now or utc_now()
        self.accounts: dict[uuid.UUID, AccountState] = {}
        self._new = _Pending()
        self._new_lots: dict[uuid.UUID, LotView] = {}
        self._notes: dict[_NoteKey, _Note] = {}

    def _note(
        self,
        kind: type[PointsChanged],
        account: AccountState,
        points: int,
        posting: PostingRecord | None,
        *,
        event_id: uuid.UUID | None = None,
        available_at: datetime | None = None,
    ) -> None:
        correlation = posting.correlation_id if posting is not None else None
        key = (kind, account.member_id, event_id or correlation)
        note = self._notes.get(key)
        if note is None:
            note = self._notes[key] = _Note(account.programme_id, event_id, correlation)
        note.points += points
        if available_at is not None:
            note.available_at = max(available_at, note.available_at or available_at)

    def events(self) -> list[PointsChanged]:
        """The domain events of the changes so far (written by ``flush``)."""
        out: list[PointsChanged] = []
        for (kind, member_id, _), note in self._notes.items():
            extra = {"available_at": note.available_at} if kind is PointsPending else {}
            out.append(
                kind(
                    programme_id=note.programme_id,
                    member_id=member_id,
                    occurred_at=self.now,
                    points=note.points,
                    event_id=note.event_id,
                    correlation_id=note.correlation_id,
                    **extra,
                )
            )
        return out

    # --- loading -----------------------------------------------------------------------

    def lock(self, member_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, AccountState]:
        """Lock the accounts of ``member_ids`` (in id order) and load their balances."""
        wanted = self._load(_LOCK_ACCOUNTS, member_ids)
        if wanted:
            missing = set(wanted) - self.accounts.keys()
            if missing:
                raise AccountNotFound(f"no points account for member {sorted(missing)[0]}")
        return self.accounts

    def try_lock(self, member_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Lock those accounts of ``member_ids`` that no other transaction holds, without
        waiting (PostgreSQL's ``SKIP LOCKED``), and load their balances; the ids of the
        accounts now held. An account skipped is held elsewhere, or does not exist:
        ``lock`` tells which. Never waits, so it cannot take part in a deadlock."""
        member_ids = set(member_ids)
        self._load(_TRY_LOCK_ACCOUNTS, member_ids)
        return member_ids & self.accounts.keys()

    def _load(self, query: Lookup, member_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """Run a locking ``query`` for the accounts not held yet; the ids it asked for."""
        # The query locks in id order (ORDER BY); sorted here only to send the same
        # parameter for the same accounts (by the UUID's int: UUID.__lt__ is Python).
        wanted = sorted(set(member_ids) - self.accounts.keys(), key=_UUID_INT)
        if wanted:
            for member_id, programme_id, available, pending, lifetime in query.rows(
                self.session.connection(), wanted
            ):
                self.accounts[member_id] = AccountState(
                    member_id, programme_id, available, pending, lifetime
                )
        return wanted

    def adopt(self, account: AccountState) -> None:
        """Take over an account the caller has locked (``SELECT … FOR UPDATE``) itself."""
        self.accounts.setdefault(account.member_id, account)

    def account(self, member_id: uuid.UUID) -> AccountState:
        if member_id not in self.accounts:
            self.lock([member_id])
        return self.accounts[member_id]

    def open_account(self, *, member_id: uuid.UUID, programme_id: uuid.UUID) -> AccountState:
        """A new, empty account. Inserted at once: the member row exists already."""
        self.session.connection().execute(
            table_of(Account)
            .insert()
            .values(
                member_id=member_id,
                programme_id=programme_id,
                available=0,
                pending=0,
                lifetime_earned=0,
                updated_at=self.now,
            )
        )
        state = AccountState(member_id, programme_id, 0, 0, 0, open_lots=[])
        self.accounts[member_id] = state
        return state

    def _lots(self, account: AccountState) -> list[LotView]:
        if account.open_lots is None:
            rows = (
                self.session.connection()
                .execute(
                    select(*LOT_VIEW).where(Lot.member_id == account.member_id, Lot.remaining > 0)
                )
                .all()
            )
            account.open_lots = [LotView(*row) for row in rows]
            # Lots created earlier in this unit of work are not in the database yet.
            account.open_lots.extend(
                lot for lot in self._new_lots.values() if lot.member_id == account.member_id
            )
        return account.open_lots

    def lots_of_event(self, account: AccountState, event_id: uuid.UUID) -> list[LotView]:
        """The lots an event created that still hold points (loaded with the open lots)."""
        return [lot for lot in self._lots(account) if lot.event_id == event_id]

    def expired_from_event(self, account: AccountState, event_id: uuid.UUID) -> int:
        """Points an event earned that later expired unused (0 for most orders)."""
        expired = (
            self.session.connection()
            .execute(
                select(func.coalesce(func.sum(PostingLot.points), 0))
                .join(Posting, Posting.id == PostingLot.posting_id)
                .join(Lot, Lot.id == PostingLot.lot_id)
                .where(
                    PostingLot.member_id == account.member_id,
                    Lot.event_id == event_id,
                    Posting.kind == PostingKind.expire.value,
                )
            )
            .scalar_one()
        )
        return -int(expired)

    # --- operations --------------------------------------------------------------------

    def _posting(
        self,
        account: AccountState,
        *,
        kind: PostingKind,
        points: int,
        details: dict[str, Any],
        correlation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
        actor: str | None = None,
        reason: str | None = None,
        rule_id: uuid.UUID | None = None,
        rule_version: int | None = None,
        refund_of: uuid.UUID | None = None,
    ) -> PostingRecord:
        record = PostingRecord(
            id=new_id(),
            member_id=account.member_id,
            kind=kind.value,
            points=points,
            correlation_id=correlation_id or new_id(),
            event_id=event_id,
            explanation=render(details, "en"),
            details=details,
            created_at=self.now,
            actor=actor,
            reason=reason,
        )
        self._new.postings.append(
            {
                "id": record.id,
                "member_id": record.member_id,
                "programme_id": account.programme_id,
                "kind": record.kind,
                "points": record.points,
                "correlation_id": record.correlation_id,
                "event_id": record.event_id,
                "explanation": record.explanation,
                "details": record.details,
                "actor": actor,
                "reason": reason,
                "rule_id": rule_id,
                "rule_version": rule_version,
                "refund_of": refund_of,
                "created_at": self.now,
            }
        )
        account.dirty = True
        return record

    def _allocate(self, posting: PostingRecord, lot: LotView, points: int) -> None:
        lot.remaining += points
        lot.dirty = True
        self._new.allocations.append(
            {
                "posting_id": posting.id,
                "lot_id": lot.id,
                "member_id": lot.member_id,
                "points": points,
            }
        )

    def earn(
        self,
        account: AccountState,
        *,
        programme: Programme,
        points: int,
        earned_at: datetime,
        details: dict[str, Any],
        event_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: str | None = None,
        reason: str | None = None,
        kind: PostingKind = PostingKind.earn,
        pending: bool = True,
        rule_id: uuid.UUID | None = None,
        rule_version: int | None = None,
    ) -> PostingRecord:
        """Credit ``points`` as a new lot: pending until the return window has passed
        (unless ``pending`` is false, as for goodwill), expiring per the programme.
        ``rule_id``/``rule_version``: the earning rule that produced the points."""
        if points <= 0:
            raise ValueError("earn needs a positive amount")
        posting = self._posting(
            account,
            kind=kind,
            points=points,
            details=details,
            correlation_id=correlation_id,
            event_id=event_id,
            actor=actor,
            reason=reason,
            rule_id=rule_id,
            rule_version=rule_version,
        )
        available_at = programmes.available_at(programme, earned_at) if pending else earned_at
        is_pending = available_at > self.now
        lot = LotView(
            id=new_id(),
            member_id=account.member_id,
            state=(LotState.pending if is_pending else LotState.available).value,
            amount=points,
            remaining=points,
            earned_at=earned_at,
            available_at=available_at,
            expires_at=programmes.expires_at(programme, earned_at),
            event_id=event_id,
        )
        self._new.lots.append(
            {
                "id": lot.id,
                "member_id": lot.member_id,
                "programme_id": account.programme_id,
                "posting_id": posting.id,
                "event_id": event_id,
                "state": lot.state,
                "amount": points,
                "remaining": points,
                "earned_at": earned_at,
                "available_at": available_at,
                "expires_at": lot.expires_at,
            }
        )
        account.lifetime_earned += points
        if is_pending:
            account.pending += points
            self._note(
                PointsPending,
                account,
                points,
                posting,
                event_id=event_id,
                available_at=available_at,
            )
        else:
            self._settle_debt(account, lot, posting)
            account.available += points
            earned = PointsAdjusted if kind == PostingKind.adjust else PointsEarned
            self._note(earned, account, points, posting, event_id=event_id)
        self._new_lots[lot.id] = lot
        if account.open_lots is not None:
            account.open_lots.append(lot)
        return posting

    def _settle_debt(self, account: AccountState, lot: LotView, posting: PostingRecord) -> int:
        """Newly available ``lot`` first pays off a negative available balance."""
        if account.available >= 0 or lot.remaining == 0:
            return 0
        settled = min(lot.remaining, -account.available)
        self._allocate(posting, lot, -settled)
        return settled

    def spend(
        self,
        account: AccountState,
        *,
        points: int,
        kind: PostingKind,
        details: dict[str, Any],
        event_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: str | None = None,
        reason: str | None = None,
        allow_negative: bool = False,
    ) -> PostingRecord:
        """Take ``points`` from available lots, earliest expiry first."""
        if points <= 0:
            raise ValueError("spend needs a positive amount")
        if account.available < points and not allow_negative:
            raise InsufficientPoints(
                f"{points} points needed, {max(account.available, 0)} available",
                needed=points,
                available=max(account.available, 0),
            )
        posting = self._posting(
            account,
            kind=kind,
            points=-points,
            details=details,
            correlation_id=correlation_id,
            event_id=event_id,
            actor=actor,
            reason=reason,
        )
        self._take_available(account, posting, points)
        account.available -= points
        self._note(_SPENT.get(kind, PointsRedeemed), account, -points, posting, event_id=event_id)
        return posting

    def _take_available(self, account: AccountState, posting: PostingRecord, points: int) -> int:
        left = points
        candidates = [
            lot
            for lot in self._lots(account)
            if lot.state == LotState.available and lot.remaining > 0
        ]
        for lot in sorted(candidates, key=LotView.fifo_key):
            if left == 0:
                break
            take = min(lot.remaining, left)
            self._allocate(posting, lot, -take)
            left -= take
        return points - left

    def reverse(
        self,
        account: AccountState,
        *,
        points: int,
        event_id: uuid.UUID,
        details: dict[str, Any],
        return_event_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> PostingRecord:
        """Take back ``points`` earned by ``event_id`` (a return).

        Taken from that order's own lots first (usually still pending), then from other
        available points; what cannot be covered leaves a negative available balance that
        later earnings settle. The member never keeps points for goods they returned."""
        posting = self._posting(
            account,
            kind=PostingKind.reverse,
            points=-points,
            details=details,
            correlation_id=correlation_id,
            event_id=return_event_id,
        )
        left = points
        for lot in self.lots_of_event(account, event_id):
            if left == 0:
                break
            take = min(lot.remaining, left)
            if take == 0:
                continue
            self._allocate(posting, lot, -take)
            if lot.state == LotState.pending:
                account.pending -= take
            else:
                account.available -= take
            left -= take
        if left:
            # Whatever other available lots cannot cover becomes a negative balance.
            self._take_available(account, posting, left)
            account.available -= left
        self._note(PointsReversed, account, -points, posting, event_id=return_event_id)
        return posting

    def activate(self, account: AccountState, lot: LotView) -> PostingRecord | None:
        """Pending → available. Settles debt with a zero-point ``settle`` posting."""
        if lot.state != LotState.pending:
            return None
        lot.state = LotState.available.value
        lot.dirty = True
        account.dirty = True
        account.pending -= lot.remaining
        if lot.remaining > 0:
            self._note(PointsActivated, account, lot.remaining, None)
        settle: PostingRecord | None = None
        if account.available < 0 and lot.remaining > 0:
            amount = min(lot.remaining, -account.available)
            settle = self._posting(
                account,
                kind=PostingKind.settle,
                points=0,
                details={"template": "settle", "params": {"points": amount}},
            )
            self._allocate(settle, lot, -amount)
            account.available += amount
            account.available += lot.remaining
        else:
            account.available += lot.remaining
        return settle

    def expire(
        self,
        account: AccountState,
        lot: LotView,
        *,
        points: int | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> PostingRecord | None:
        """Expire what is left in ``lot`` (or ``points`` of it: a refund's share)."""
        if lot.remaining == 0:
            return None
        points = lot.remaining if points is None else min(points, lot.remaining)
        posting = self._posting(
            account,
            kind=PostingKind.expire,
            points=-points,
            details={
                "template": "expire",
                "params": {"points": points, "earned": lot.earned_at.date().isoformat()},
            },
            correlation_id=correlation_id,
        )
        if lot.state == LotState.pending:
            account.pending -= points
        else:
            account.available -= points
        self._allocate(posting, lot, -points)
        self._note(PointsExpired, account, -points, posting)
        return posting

    def refund(
        self,
        account: AccountState,
        *,
        posting_id: uuid.UUID,
        points: int | None = None,
        details: dict[str, Any],
        correlation_id: uuid.UUID | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> PostingRecord:
        """Give back all (``points=None``) or ``points`` of what the ``redeem`` posting
        ``posting_id`` took, to the very lots it took them from.

        Never more than the posting took minus its earlier refunds. A partial refund
        goes to the lots that expire last (never-expiring first), so the member keeps
        the returned points as long as possible. Points that go back to a lot already
        past its expiry expire at once, with an ``expire`` posting under the same
        correlation id (``PostingRecord.expired``): the member ends up with what they
        would hold had they never spent them, and the ledger never shows available
        points that should have expired. A negative available balance (a return after
        the spend) is paid off first, from the part that would have expired anyway."""
        if points is not None and points <= 0:
            raise ValueError("refund needs a positive amount")
        taken, refundable = self._refundable(account, posting_id)
        points = refundable if points is None else points
        if points > refundable or refundable == 0:
            raise RefundExceedsPosting(
                f"{points} points to refund, {refundable} refundable",
                requested=points,
                refundable=refundable,
            )
        lots = {lot.id: lot for lot in self._lots(account)}
        missing = [lot_id for lot_id in taken if lot_id not in lots]
        if missing:
            rows = (
                self.session.connection()
                .execute(select(*LOT_VIEW).where(Lot.id.in_(missing)))
                .all()
            )
            for row in rows:
                lot = LotView(*row)
                lots[lot.id] = lot
                assert account.open_lots is not None
                account.open_lots.append(lot)

        def expired(lot: LotView) -> bool:
            return lot.expires_at is not None and lot.expires_at <= self.now

        # Latest expiry first, lots past their expiry last.
        candidates = sorted((lots[i] for i in taken), key=LotView.fifo_key, reverse=True)
        shares: list[tuple[LotView, int]] = []
        left = points
        for lot in [x for x in candidates if not expired(x)] + [
            x for x in candidates if expired(x)
        ]:
            if left == 0:
                break
            give = min(taken[lot.id], left)
            if give:
                shares.append((lot, give))
                left -= give
        # Debt first, taken from the end of the list: lots past their expiry, then the
        # soonest-expiring ones.
        settle = min(points, max(-account.available, 0))
        for index in range(len(shares) - 1, -1, -1):
            if settle == 0:
                break
            lot, give = shares[index]
            cut = min(give, settle)
            shares[index] = (lot, give - cut)
            settle -= cut
        posting = self._posting(
            account,
            kind=PostingKind.refund,
            points=points,
            details=details,
            correlation_id=correlation_id,
            actor=actor,
            reason=reason,
            refund_of=posting_id,
        )
        account.available += points
        self._note(PointsRefunded, account, points, posting)
        for lot, give in shares:
            if give:
                self._allocate(posting, lot, give)
        for lot, give in shares:
            if give and expired(lot):
                # Only what this refund gave back: any older points of the lot that are
                # still there are the expiry job's, as they would be without the refund.
                gone = self.expire(account, lot, points=give, correlation_id=posting.correlation_id)
                if gone is not None:
                    posting.expired -= gone.points
        return posting

    def _refundable(
        self, account: AccountState, posting_id: uuid.UUID
    ) -> tuple[dict[uuid.UUID, int], int]:
        """Per lot, what the ``redeem`` posting took from it and no refund has given back
        yet; and the points still refundable in all (refunds written by this writer but
        not flushed yet count too).

        The total is the posting's points minus earlier refunds, but never more than the
        lots can take back: a spend that was allowed to go negative took part of its
        points from no lot, and later earnings paid that part."""
        found = (
            self.session.connection()
            .execute(
                select(Posting.member_id, Posting.kind, Posting.points).where(
                    Posting.id == posting_id
                )
            )
            .one_or_none()
        )
        original = _Original(*found) if found is not None else None
        if original is None:  # written by this writer and not flushed yet?
            original = next(
                (
                    _Original(row["member_id"], row["kind"], row["points"])
                    for row in self._new.postings
                    if row["id"] == posting_id
                ),
                None,
            )
        if original is None or original.member_id != account.member_id:
            raise PostingNotFound(f"no posting {posting_id} of member {account.member_id}")
        if original.kind != PostingKind.redeem.value:
            raise PostingNotRefundable(
                f"posting {posting_id} is {original.kind!r}; only redemptions are refunded"
            )
        refunded = int(
            self.session.connection()
            .execute(
                select(func.coalesce(func.sum(Posting.points), 0)).where(
                    Posting.refund_of == posting_id, Posting.member_id == account.member_id
                )
            )
            .scalar_one()
        )
        left: dict[uuid.UUID, int] = {}
        for lot_id, amount in self.session.connection().execute(
            select(PostingLot.lot_id, PostingLot.points).where(PostingLot.posting_id == posting_id)
        ):
            left[lot_id] = left.get(lot_id, 0) - int(amount)
        for lot_id, amount in self.session.connection().execute(
            select(PostingLot.lot_id, func.sum(PostingLot.points))
            .join(Posting, Posting.id == PostingLot.posting_id)
            .where(Posting.refund_of == posting_id, PostingLot.member_id == account.member_id)
            .group_by(PostingLot.lot_id)
        ):
            left[lot_id] = left.get(lot_id, 0) - int(amount)
        unflushed = {
            row["id"]: row["points"]
            for row in self._new.postings
            if row.get("refund_of") == posting_id
        }
        refunded += sum(unflushed.values())
        for row in self._new.allocations:
            if row["posting_id"] in unflushed or row["posting_id"] == posting_id:
                left[row["lot_id"]] = left.get(row["lot_id"], 0) - row["points"]
        caps = {lot_id: points for lot_id, points in left.items() if points > 0}
        return caps, max(min(-int(original.points) - refunded, sum(caps.values())), 0)

    # --- writing -----------------------------------------------------------------------

    def flush(self, batch: WriteBatch | None = None) -> None:
        """Write everything in FK order: postings, lots, allocations, then the lots and
        accounts that changed — into ``batch`` when given (the caller flushes it with
        its own writes, in one round trip on PostgreSQL), else at once."""
        own = batch is None
        batch = batch or WriteBatch()
        new = self._new
        batch.insert(table_of(Posting), new.postings)
        if self._notes:
            outbox.add_to(batch, self.events(), now=self.now)
            self._notes = {}
        for row in new.lots:
            view = self._new_lots[row["id"]]
            row["remaining"] = view.remaining
            row["state"] = view.state
        batch.insert(table_of(Lot), new.lots)
        batch.insert(table_of(PostingLot), new.allocations)
        changed = [
            {"id": lot.id, "remaining": lot.remaining, "state": lot.state}
            for account in self.accounts.values()
            for lot in account.open_lots or []
            if lot.dirty and lot.id not in self._new_lots
        ]
        batch.update(table_of(Lot), changed)
        for account in self.accounts.values():
            for lot in account.open_lots or []:
                lot.dirty = False
        dirty_accounts = [a for a in self.accounts.values() if a.dirty]
        batch.update(
            table_of(Account),
            [
                {
                    "member_id": a.member_id,
                    "available": a.available,
                    "pending": a.pending,
                    "lifetime_earned": a.lifetime_earned,
                    "updated_at": self.now,
                }
                for a in dirty_accounts
            ],
            key="member_id",
        )
        for a in dirty_accounts:
            a.dirty = False
        self._new = _Pending()
        self._new_lots = {}
        if own:
            batch.flush(self.session.connection())
