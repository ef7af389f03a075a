"""Charity donations: members give points to a good cause the programme names.

A programme configures its charities (a code such as ``tafel``, a localised name, a
link). Points become a donation in two ways:

* a ``charity_donation`` reward is redeemed: the rewards feature burns the points and
  calls ``donations.record`` in the same transaction (one donation per redemption);
* directly, ``POST /v1/members/{id}/donations``: ``donations.donate`` burns the points
  (a ``redeem`` posting explained as "Donation to Tafel Deutschland e.V.: -500") and
  records the donation.

Each donation keeps the points and what they were worth (``value_minor`` at the
programme's point value, rounded down: the retailer pays the charity what the points
are worth, never a fraction of a cent more), so per-charity totals for a period are one
grouped query (``summary``). Donations are final: there is no refund of a donation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.errors import Conflict, Invalid, NotFound
from treu.kit.ids import new_id
from treu.kit.time import iso, utc_now
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import PostingKind
from treu.ledger.service import ledger
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards._common import check_currency, check_member, digest, find_keyed
from treu.rewards.payments import worth
from treu.rewards.schemas import CharityOut, CharityRef, DonationOut, Keyed


class CharityNotFound(NotFound):
    code = "charity_not_found"
    title = "Charity not found"


class CharityExists(Conflict):
    code = "charity_exists"
    title = "A charity with this code exists already"


class CharityInactive(Invalid):
    code = "charity_inactive"
    title = "The charity takes no donations at the moment"


class Charity(IdMixin, TimestampMixin, Base):
    __tablename__ = "charities"
    __table_args__ = (UniqueConstraint("programme_id", "code"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[dict[str, Any]]
    """Localised: ``{"de": "Tafel Deutschland e.V.", "en": "German Food Banks"}``."""
    description: Mapped[dict[str, Any]] = mapped_column(default=dict)
    url: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(default=True)


class Donation(IdMixin, Base):
    __tablename__ = "donations"
    __table_args__ = (
        UniqueConstraint("member_id", "key"),
        Index("ix_donations_programme_created", "programme_id", "created_at"),
        Index("ix_donations_member_id_id", "member_id", "id"),
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("value_minor >= 0", name="value_non_negative"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    charity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charities.id"))
    points: Mapped[int]
    value_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    redemption_id: Mapped[uuid.UUID | None]
    """The reward redemption it came from (no foreign key: the rewards feature's table;
    the key ``redemption:<id>`` keeps it to one donation per redemption)."""
    posting_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("postings.id"))
    """The ``redeem`` posting that burnt the points."""
    key: Mapped[str] = mapped_column(String(200))
    payload_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


@dataclass
class CharityTotal:
    charity_id: uuid.UUID
    code: str
    name: dict[str, Any]
    donations: int
    donors: int
    points: int
    value_minor: int
    currency: str


def localised(value: dict[str, Any], lang: str) -> str:
    return str(value.get(lang) or value.get("en") or next(iter(value.values()), ""))


def charity_out(charity: Charity) -> CharityOut:
    return CharityOut(
        id=charity.id,
        code=charity.code,
        name=charity.name,
        description=charity.description,
        url=charity.url,
        active=charity.active,
        created_at=iso(charity.created_at),
    )


def donation_out(donation: Donation, charity: Charity) -> DonationOut:
    return DonationOut(
        id=donation.id,
        member_id=donation.member_id,
        charity=CharityRef(code=charity.code, name=charity.name),
        points=donation.points,
        value_minor=donation.value_minor,
        currency=donation.currency,
        redemption_id=donation.redemption_id,
        posting_id=donation.posting_id,
        created_at=iso(donation.created_at),
    )


class DonationService:
    # --- charities (admin) ------------------------------------------------------------

    def add_charity(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID,
        code: str,
        name: dict[str, str],
        description: dict[str, str] | None = None,
        url: str | None = None,
        active: bool = True,
    ) -> Charity:
        exists = session.scalar(
            select(Charity.id).where(Charity.programme_id == programme_id, Charity.code == code)
        )
        if exists is not None:
            raise CharityExists(f"charity {code!r} exists already in this programme")
        charity = Charity(
            programme_id=programme_id,
            code=code,
            name=dict(name),
            description=dict(description or {}),
            url=url,
            active=active,
        )
        session.add(charity)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent request added the same code
            raise CharityExists(f"charity {code!r} exists already in this programme") from exc
        return charity

    def update_charity(
        self, session: Session, *, programme_id: uuid.UUID, code: str, changes: dict[str, Any]
    ) -> Charity:
        """Change name, description, link or ``active`` (an inactive charity keeps its
        donations and totals but takes no new ones)."""
        charity = self.charity(session, programme_id=programme_id, ref=code)
        for field in ("name", "description", "url", "active"):
            if field in changes:
                setattr(charity, field, changes[field])
        session.flush()
        return charity

    def charities(
        self, session: Session, *, programme_id: uuid.UUID, active_only: bool = False
    ) -> list[Charity]:
        query = select(Charity).where(Charity.programme_id == programme_id)
        if active_only:
            query = query.where(Charity.active.is_(True))
        return list(session.scalars(query.order_by(Charity.code)))

    def charity(
        self, session: Session, *, programme_id: uuid.UUID, ref: str | uuid.UUID
    ) -> Charity:
        """By code (or id) within the programme."""
        condition = Charity.id == ref if isinstance(ref, uuid.UUID) else Charity.code == ref
        found = session.scalars(
            select(Charity).where(Charity.programme_id == programme_id, condition)
        ).one_or_none()
        if found is None:
            raise CharityNotFound(f"no charity {str(ref)!r} in this programme")
        return found

    # --- donations --------------------------------------------------------------------

    def record(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        programme_id: uuid.UUID,
        charity: str | uuid.UUID,
        points: int,
        value_minor: int,
        currency: str,
        redemption_id: uuid.UUID,
        posting_id: uuid.UUID | None = None,
        now: datetime | None = None,
    ) -> Donation:
        """Record the donation of a redeemed ``charity_donation`` reward; the caller has
        burnt the points already (``posting_id``: that posting). ``charity``: its code or
        id. Idempotent per redemption: a second call returns the first donation."""
        now = now or utc_now()
        programme = programmes.get(session, programme_id)
        currency = currency.upper()
        check_currency(programme, currency)
        if points <= 0 or value_minor < 0:
            raise Invalid("a donation needs positive points and a value of at least 0")
        target = self.charity(session, programme_id=programme_id, ref=charity)
        if not target.active:
            raise CharityInactive(f"charity {target.code!r} takes no donations at the moment")
        key = f"redemption:{redemption_id}"
        payload = {
            "charity": target.code,
            "points": points,
            "value_minor": value_minor,
            "redemption_id": str(redemption_id),
        }
        existing = find_keyed(
            session, Donation, member_id=member_id, key=key, payload_hash=digest(payload)
        )
        if existing is not None:
            return existing
        donation = Donation(
            id=new_id(),
            programme_id=programme_id,
            member_id=member_id,
            charity_id=target.id,
            points=points,
            value_minor=value_minor,
            currency=currency,
            redemption_id=redemption_id,
            posting_id=posting_id,
            key=key,
            payload_hash=digest(payload),
            created_at=now,
        )
        session.add(donation)
        session.flush()
        return donation

    def donate(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        key: str,
        charity: str,
        points: int,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Keyed[DonationOut]:
        """Donate ``points`` to ``charity`` (its code): burn them FIFO and record the
        donation; a replay answers the first donation."""
        now = now or utc_now()
        member = members.get(session, member_id)
        writer = ledger.writer(session, now=now)
        account = writer.account(member.id)  # locks first: a concurrent retry waits here
        full_key = f"donation:{key}"
        payload = {"charity": charity, "points": points}
        existing = find_keyed(
            session, Donation, member_id=member.id, key=full_key, payload_hash=digest(payload)
        )
        if existing is not None:
            charity_row = session.get_one(Charity, existing.charity_id)
            return Keyed(donation_out(existing, charity_row), replayed=True)
        check_member(member)
        if points <= 0:
            raise Invalid("points must be positive")
        programme = programmes.get(session, member.programme_id)
        target = self.charity(session, programme_id=programme.id, ref=charity)
        if not target.active:
            raise CharityInactive(f"charity {target.code!r} takes no donations at the moment")
        if account.available < points:
            raise InsufficientPoints(
                f"{points} points needed, {max(account.available, 0)} available",
                needed=points,
                available=max(account.available, 0),
            )
        donation_id = new_id()
        posting = writer.spend(
            account,
            points=points,
            kind=PostingKind.redeem,
            details={
                "template": "donation",
                "params": {"points": points, "charity": dict(target.name)},
            },
            correlation_id=donation_id,
            actor=actor,
        )
        writer.flush()
        donation = Donation(
            id=donation_id,
            programme_id=programme.id,
            member_id=member.id,
            charity_id=target.id,
            points=points,
            value_minor=worth(points, programme.point_value_minor),
            currency=programme.currency,
            posting_id=posting.id,
            key=full_key,
            payload_hash=digest(payload),
            actor=actor,
            created_at=now,
        )
        session.add(donation)
        session.flush()
        return Keyed(donation_out(donation, target))

    def summary(
        self,
        session: Session,
        *,
        programme: Programme,
        start: date | None = None,
        end: date | None = None,
    ) -> list[CharityTotal]:
        """Per charity: donations, distinct donors, points and value from ``start`` to
        ``end`` (both days included, in the programme's time zone). Every charity of the
        programme is listed, those without donations with zeros."""
        zone = ZoneInfo(programme.timezone)
        where = [Donation.programme_id == programme.id]
        if start is not None:
            where.append(Donation.created_at >= datetime.combine(start, time(), zone))
        if end is not None:
            until = datetime.combine(end + timedelta(days=1), time(), zone)
            where.append(Donation.created_at < until.astimezone(UTC))
        totals = {
            row.charity_id: row
            for row in session.execute(
                select(
                    Donation.charity_id,
                    func.count().label("donations"),
                    func.count(func.distinct(Donation.member_id)).label("donors"),
                    func.sum(Donation.points).label("points"),
                    func.sum(Donation.value_minor).label("value_minor"),
                )
                .where(*where)
                .group_by(Donation.charity_id)
            )
        }
        out = []
        for charity in self.charities(session, programme_id=programme.id):
            row = totals.get(charity.id)
            out.append(
                CharityTotal(
                    charity_id=charity.id,
                    code=charity.code,
                    name=charity.name,
                    donations=int(row.donations) if row else 0,
                    donors=int(row.donors) if row else 0,
                    points=int(row.points) if row else 0,
                    value_minor=int(row.value_minor) if row else 0,
                    currency=programme.currency,
                )
            )
        return sorted(out, key=lambda t: (-t.value_minor, -t.points, t.code))


donations = DonationService()
