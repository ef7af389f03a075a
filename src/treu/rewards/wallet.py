"""The e-wallet: money credit a member got for points (a ``wallet_credit`` reward) and
spends at the checkout.

* ``wallet_entries`` are append-only: a ``credit`` (from a redemption), a ``debit`` (used
  at checkout for an order), a ``refund`` of a debit (the order was returned or
  cancelled) and a ``reversal`` (a credit taken back, ``cancel_credit``). Amounts
  are signed integer minor units; the balance is their sum.
* ``wallets`` caches that sum per member (``CHECK balance_minor >= 0``) and is the row
  every change locks (``SELECT … FOR UPDATE``; on SQLite the database write lock), so
  concurrent debits of one member are serialised and the balance never goes below zero.
  ``verify`` rebuilds the balances from the entries.
* Lock order: the points account before the wallet (a redemption that credits the wallet
  holds the account lock already); a debit takes the wallet lock only.
* Idempotency: every entry has a key unique per member, namespaced by kind
  (``debit:<Idempotency-Key>``, ``refund:<…>``, ``redemption:<redemption id>``), so a
  retry answers the first result and a redemption credits at most once. Entries never
  change, so a replay's answer is rebuilt from the entry itself.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from treu.db.base import Base, IdMixin
from treu.errors import Invalid, NotFound
from treu.kit.ids import new_id
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.time import iso, utc_now
from treu.members.service import members
from treu.programmes.service import programmes
from treu.rewards._common import check_currency, check_member, digest, find_keyed
from treu.rewards.schemas import Keyed, WalletDebitOut, WalletEntryOut, WalletRefundOut


class EntryKind(enum.StrEnum):
    credit = "credit"
    debit = "debit"
    refund = "refund"
    reversal = "reversal"


class InsufficientWallet(Invalid):
    code = "insufficient_wallet_balance"
    title = "Not enough wallet credit"


class WalletDebitNotFound(NotFound):
    code = "wallet_debit_not_found"
    title = "Wallet debit not found"


class RefundExceedsDebit(Invalid):
    code = "refund_exceeds_debit"
    title = "More refunded than was debited"


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (CheckConstraint("balance_minor >= 0", name="balance_non_negative"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    currency: Mapped[str] = mapped_column(String(3))
    balance_minor: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class WalletEntry(IdMixin, Base):
    __tablename__ = "wallet_entries"
    __table_args__ = (
        UniqueConstraint("member_id", "key"),
        Index("ix_wallet_entries_member_id_id", "member_id", "id"),
        Index(
            "ix_wallet_entries_debit_id",
            "debit_id",
            postgresql_where=text("debit_id IS NOT NULL"),
            sqlite_where=text("debit_id IS NOT NULL"),
        ),
        CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after_minor >= 0", name="balance_after_non_negative"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int]
    """Signed: credits and refunds add, debits and reversals take."""
    currency: Mapped[str] = mapped_column(String(3))
    balance_after_minor: Mapped[int]
    requested_minor: Mapped[int | None]
    """A debit: what the checkout asked for (more than ``-amount_minor`` when partial)."""
    order_id: Mapped[str | None] = mapped_column(String(100))
    redemption_id: Mapped[uuid.UUID | None]
    """The reward redemption a credit came from (no foreign key: the rewards tables are
    the rewards feature's; the unique key ``redemption:<id>`` keeps it to one credit)."""
    debit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("wallet_entries.id"))
    """A refund: the debit it gives back (part of)."""
    key: Mapped[str] = mapped_column(String(200))
    payload_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


@dataclass
class WalletBalance:
    member_id: uuid.UUID
    currency: str
    balance_minor: int


@dataclass
class EntryPage:
    items: list[WalletEntry]
    next_cursor: str | None


@dataclass
class WalletDiscrepancy:
    member_id: uuid.UUID
    cached: int
    rebuilt: int


def entry_out(entry: WalletEntry) -> WalletEntryOut:
    """An entry as the API shows it."""
    return WalletEntryOut(**_entry_fields(entry))


def _entry_fields(entry: WalletEntry) -> dict[str, Any]:
    """What every answer about an entry says (a debit's and a refund's add to it)."""
    return {
        "id": entry.id,
        "member_id": entry.member_id,
        "kind": entry.kind,
        "amount_minor": entry.amount_minor,
        "currency": entry.currency,
        "balance_after_minor": entry.balance_after_minor,
        "requested_minor": entry.requested_minor,
        "order_id": entry.order_id,
        "redemption_id": entry.redemption_id,
        "debit_id": entry.debit_id,
        "created_at": iso(entry.created_at),
    }


class WalletService:
    # --- called by the rewards feature ------------------------------------------------

    def credit(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        programme_id: uuid.UUID,
        amount_minor: int,
        currency: str,
        redemption_id: uuid.UUID,
        now: datetime | None = None,
    ) -> WalletEntry:
        """Credit ``amount_minor`` for a ``wallet_credit`` reward redemption. Idempotent
        per redemption: a second call returns the first credit."""
        now = now or utc_now()
        if amount_minor <= 0:
            raise Invalid("a wallet credit must be positive")
        programme = programmes.get(session, programme_id)
        currency = currency.upper()
        check_currency(programme, currency)
        wallet = self._lock(session, member_id, create=(programme_id, currency, now))
        assert wallet is not None
        key = f"redemption:{redemption_id}"
        payload = {"redemption_id": str(redemption_id), "amount_minor": amount_minor}
        existing = find_keyed(
            session, WalletEntry, member_id=member_id, key=key, payload_hash=digest(payload)
        )
        if existing is not None:
            return existing
        return self._append(
            session,
            wallet,
            kind=EntryKind.credit,
            amount=amount_minor,
            key=key,
            payload=payload,
            redemption_id=redemption_id,
            now=now,
        )

    def cancel_credit(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        redemption_id: uuid.UUID,
        now: datetime | None = None,
    ) -> WalletEntry | None:
        """Take back the credit of a cancelled redemption (a ``reversal``). ``None`` when
        the redemption never credited the wallet; ``insufficient_wallet_balance`` when the
        credit was spent already (the caller then refuses the cancellation). Idempotent."""
        now = now or utc_now()
        wallet = self._lock(session, member_id)
        credit = session.scalars(
            select(WalletEntry).where(
                WalletEntry.member_id == member_id,
                WalletEntry.key == f"redemption:{redemption_id}",
            )
        ).one_or_none()
        if wallet is None or credit is None:
            return None
        key = f"cancel:{redemption_id}"
        payload = {"redemption_id": str(redemption_id)}
        existing = find_keyed(
            session, WalletEntry, member_id=member_id, key=key, payload_hash=digest(payload)
        )
        if existing is not None:
            return existing
        if wallet.balance_minor < credit.amount_minor:
            raise InsufficientWallet(
                f"the credit of {credit.amount_minor} was spent already "
                f"({wallet.balance_minor} left)",
                needed=credit.amount_minor,
                available=wallet.balance_minor,
            )
        return self._append(
            session,
            wallet,
            kind=EntryKind.reversal,
            amount=-credit.amount_minor,
            key=key,
            payload=payload,
            redemption_id=redemption_id,
            now=now,
        )

    # --- checkout ---------------------------------------------------------------------

    def debit(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        key: str,
        order_id: str,
        amount_minor: int,
        currency: str,
        partial: bool = False,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Keyed[WalletDebitOut]:
        """Pay ``amount_minor`` of an order from the wallet (with ``partial``: as much as
        the balance covers); a replay answers the first debit."""
        now = now or utc_now()
        member = members.get(session, member_id)
        currency = currency.upper()
        wallet = self._lock(session, member_id)
        full_key = f"debit:{key}"
        payload = {
            "order_id": order_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "partial": partial,
        }
        existing = find_keyed(
            session, WalletEntry, member_id=member_id, key=full_key, payload_hash=digest(payload)
        )
        if existing is not None:
            return Keyed(self._debit_out(existing), replayed=True)
        check_member(member)
        check_currency(programmes.get(session, member.programme_id), currency)
        if amount_minor <= 0:
            raise Invalid("amount_minor must be positive")
        balance = wallet.balance_minor if wallet is not None else 0
        take = min(balance, amount_minor) if partial else amount_minor
        if wallet is None or take <= 0 or take > balance:
            raise InsufficientWallet(
                f"{amount_minor} needed, {balance} in the wallet",
                needed=amount_minor,
                available=balance,
            )
        entry = self._append(
            session,
            wallet,
            kind=EntryKind.debit,
            amount=-take,
            key=full_key,
            payload=payload,
            order_id=order_id,
            requested_minor=amount_minor,
            actor=actor,
            now=now,
        )
        return Keyed(self._debit_out(entry))

    def refund(
        self,
        session: Session,
        *,
        debit_id: uuid.UUID,
        key: str,
        amount_minor: int | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Keyed[WalletRefundOut]:
        """Give back ``amount_minor`` (default: all not refunded yet) of a debit."""
        now = now or utc_now()
        debit = session.get(WalletEntry, debit_id)
        if debit is None or debit.kind != EntryKind.debit:
            raise WalletDebitNotFound(f"no wallet debit {debit_id}")
        wallet = self._lock(session, debit.member_id)
        assert wallet is not None  # a debit was made from it
        full_key = f"refund:{key}"
        payload = {"debit_id": str(debit_id), "amount_minor": amount_minor}
        existing = find_keyed(
            session,
            WalletEntry,
            member_id=debit.member_id,
            key=full_key,
            payload_hash=digest(payload),
        )
        if existing is not None:
            return Keyed(self._refund_out(existing), replayed=True)
        refundable = -debit.amount_minor - self._refunded(session, debit_id)
        amount = refundable if amount_minor is None else amount_minor
        if amount <= 0 or amount > refundable:
            raise RefundExceedsDebit(
                f"{amount} to refund, {refundable} refundable", refundable_minor=refundable
            )
        entry = self._append(
            session,
            wallet,
            kind=EntryKind.refund,
            amount=amount,
            key=full_key,
            payload=payload,
            order_id=debit.order_id,
            debit_id=debit_id,
            actor=actor,
            now=now,
        )
        return Keyed(self._refund_out(entry))

    # --- read side --------------------------------------------------------------------

    def balance(self, session: Session, *, member_id: uuid.UUID) -> WalletBalance:
        """One indexed read; a member who never had credit has a zero balance in the
        programme's currency."""
        row = session.execute(
            select(Wallet.currency, Wallet.balance_minor).where(Wallet.member_id == member_id)
        ).one_or_none()
        if row is not None:
            return WalletBalance(member_id, row.currency, row.balance_minor)
        member = members.get(session, member_id)
        return WalletBalance(member_id, programmes.get(session, member.programme_id).currency, 0)

    def balance_minor(self, session: Session, *, member_id: uuid.UUID) -> int:
        """The balance alone: one primary-key read (the checkout shows it on every cart)."""
        found = session.scalar(select(Wallet.balance_minor).where(Wallet.member_id == member_id))
        return int(found or 0)

    def entries(
        self, session: Session, *, member_id: uuid.UUID, limit: int = 20, cursor: str | None = None
    ) -> EntryPage:
        """Entries newest first, keyset-paginated on the time-ordered id."""
        query = select(WalletEntry).where(WalletEntry.member_id == member_id)
        if cursor:
            query = query.where(WalletEntry.id < uuid.UUID(str(decode_cursor(cursor)["before"])))
        rows = list(session.scalars(query.order_by(WalletEntry.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1].id)})
        return EntryPage(rows, next_cursor)

    def verify(
        self, session: Session, *, programme_id: uuid.UUID | None = None
    ) -> list[WalletDiscrepancy]:
        """Rebuild every wallet balance from its entries and report what differs."""
        where = [] if programme_id is None else [Wallet.programme_id == programme_id]
        sums = (
            select(WalletEntry.member_id, func.sum(WalletEntry.amount_minor).label("total"))
            .group_by(WalletEntry.member_id)
            .subquery()
        )
        rows = session.execute(
            select(Wallet.member_id, Wallet.balance_minor, func.coalesce(sums.c.total, 0))
            .outerjoin(sums, sums.c.member_id == Wallet.member_id)
            .where(*where)
        ).all()
        return [
            WalletDiscrepancy(member_id, cached, int(rebuilt))
            for member_id, cached, rebuilt in rows
            if cached != int(rebuilt)
        ]

    # --- internals --------------------------------------------------------------------

    def _lock(
        self,
        session: Session,
        member_id: uuid.UUID,
        *,
        create: tuple[uuid.UUID, str, datetime] | None = None,
    ) -> Wallet | None:
        """The member's wallet row, locked. ``create``: make it first if missing (two
        concurrent first credits both insert-or-ignore, then queue on the lock)."""
        if create is not None:
            programme_id, currency, now = create
            values = {
                "member_id": member_id,
                "programme_id": programme_id,
                "currency": currency,
                "balance_minor": 0,
                "updated_at": now,
            }
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            session.execute(
                insert(Wallet).values(**values).on_conflict_do_nothing(index_elements=["member_id"])
            )
        return session.scalars(
            select(Wallet)
            .where(Wallet.member_id == member_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()

    def _append(
        self,
        session: Session,
        wallet: Wallet,
        *,
        kind: EntryKind,
        amount: int,
        key: str,
        payload: dict[str, Any],
        now: datetime,
        order_id: str | None = None,
        requested_minor: int | None = None,
        redemption_id: uuid.UUID | None = None,
        debit_id: uuid.UUID | None = None,
        actor: str | None = None,
    ) -> WalletEntry:
        balance = wallet.balance_minor + amount
        entry = WalletEntry(
            id=new_id(),
            programme_id=wallet.programme_id,
            member_id=wallet.member_id,
            kind=kind.value,
            amount_minor=amount,
            currency=wallet.currency,
            balance_after_minor=balance,
            requested_minor=requested_minor,
            order_id=order_id,
            redemption_id=redemption_id,
            debit_id=debit_id,
            key=key,
            payload_hash=digest(payload),
            actor=actor,
            created_at=now,
        )
        session.add(entry)
        wallet.balance_minor = balance
        wallet.updated_at = now
        session.flush()
        return entry

    def _refunded(self, session: Session, debit_id: uuid.UUID) -> int:
        return int(
            session.scalar(
                select(func.coalesce(func.sum(WalletEntry.amount_minor), 0)).where(
                    WalletEntry.debit_id == debit_id
                )
            )
            or 0
        )

    def _debit_out(self, entry: WalletEntry) -> WalletDebitOut:
        requested = entry.requested_minor or -entry.amount_minor
        return WalletDebitOut(
            **_entry_fields(entry),
            debited_minor=-entry.amount_minor,
            remaining_to_pay_minor=requested + entry.amount_minor,
        )

    def _refund_out(self, entry: WalletEntry) -> WalletRefundOut:
        return WalletRefundOut(**_entry_fields(entry), refunded_minor=entry.amount_minor)


wallet = WalletService()
