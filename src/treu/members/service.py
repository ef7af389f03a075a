from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.db.base import Lookup, fetch, lookup
from treu.kit.ids import new_card_number, new_id
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.ledger.service import AccountState, LedgerWriter
from treu.members.errors import IdentifierTaken, MemberNotFound
from treu.members.models import IDENTIFIER_FIELDS, Member, MemberStatus
from treu.members.schemas import MemberCreate, MemberOut, MemberRef, MemberUpdate
from treu.outbox.events import MemberEnrolled, MemberUpdated
from treu.outbox.service import outbox
from treu.programmes.models import Programme

_PROFILE = (
    Member.enrolled_at,
    Member.birthday,
    Member.language,
    Member.channel,
    Member.attributes,
)
"""What earning rules may ask of a member (``MemberKey`` fields after id and status)."""


def _resolver(kind: str) -> Lookup:
    column = Member.id if kind == "member_id" else getattr(Member, kind)
    return lookup(
        lambda condition: select(Member.id, Member.status, *_PROFILE, column).where(
            Member.programme_id == bindparam("programme_id", type_=Uuid()), condition
        ),
        column,
    )


_RESOLVE = {kind: _resolver(kind) for kind in ("member_id", *IDENTIFIER_FIELDS)}


def _resolve_and_lock(kind: str) -> Any:
    column = Member.id if kind == "member_id" else getattr(Member, kind)
    return (
        select(
            Member.id,
            Member.status,
            *_PROFILE,
            Account.programme_id,
            Account.available,
            Account.pending,
            Account.lifetime_earned,
        )
        .join(Account, Account.member_id == Member.id)
        .where(
            Member.programme_id == bindparam("programme_id", type_=Uuid()),
            column == bindparam("key", type_=column.type),
        )
        .with_for_update(of=Account)
    )


_RESOLVE_AND_LOCK = {kind: _resolve_and_lock(kind) for kind in ("member_id", *IDENTIFIER_FIELDS)}


@dataclass(frozen=True)
class MemberKey:
    """What event ingestion needs of a member: who, and what earning rules may ask."""

    id: uuid.UUID
    status: str
    enrolled_at: datetime | None = None
    birthday: date | None = None
    language: str | None = None
    channel: str | None = None
    attributes: dict[str, Any] | None = None

    @classmethod
    def of(cls, member: Member) -> MemberKey:
        return cls(
            member.id,
            member.status,
            member.enrolled_at,
            member.birthday,
            member.language,
            member.channel,
            member.attributes,
        )


class MemberService:
    def enrol(
        self,
        session: Session,
        *,
        programme: Programme,
        data: MemberCreate,
        writer: LedgerWriter,
    ) -> Member:
        """Create a member and an empty points account. One identifier is enough."""
        values = {f: getattr(data, f) for f in IDENTIFIER_FIELDS}
        self._ensure_free(session, programme_id=programme.id, values=values)
        member = Member(
            id=new_id(),
            programme_id=programme.id,
            status=MemberStatus.active.value,
            email=data.email,
            phone=data.phone,
            external_id=data.external_id,
            card_number=data.card_number or self._free_card_number(session, programme.id),
            first_name=data.first_name,
            last_name=data.last_name,
            birthday=data.birthday,
            language=data.language,
            attributes=data.attributes or {},
            channel=data.channel.value,
            enrolled_at=data.enrolled_at or utc_now(),
        )
        session.add(member)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent enrolment won the race
            raise IdentifierTaken("an identifier of this member is in use already") from exc
        writer.open_account(member_id=member.id, programme_id=programme.id)
        outbox.record(
            session,
            MemberEnrolled(
                programme_id=programme.id,
                member_id=member.id,
                occurred_at=writer.now,
                channel=member.channel,
                enrolled_at=member.enrolled_at,
            ),
        )
        return member

    def update(self, session: Session, *, member: Member, data: MemberUpdate) -> Member:
        changes = data.model_dump(exclude_unset=True)
        identifiers = {k: v for k, v in changes.items() if k in IDENTIFIER_FIELDS and v}
        self._ensure_free(
            session, programme_id=member.programme_id, values=identifiers, except_id=member.id
        )
        for key, value in changes.items():
            if key == "status" and value is not None:
                member.status = MemberStatus(value).value
            elif key == "attributes" and value is not None:
                # Progressive profiling merges; a null value removes an attribute.
                merged = {**member.attributes, **value}
                member.attributes = {k: v for k, v in merged.items() if v is not None}
            else:
                setattr(member, key, value)
        try:
            session.flush()
        except IntegrityError as exc:
            raise IdentifierTaken("an identifier of this member is in use already") from exc
        if changes:
            outbox.record(
                session,
                MemberUpdated(
                    programme_id=member.programme_id,
                    member_id=member.id,
                    occurred_at=utc_now(),
                    fields=sorted(changes),
                ),
            )
        return member

    def get(self, session: Session, member_id: uuid.UUID) -> Member:
        member = session.get(Member, member_id)
        if member is None:
            raise MemberNotFound(f"no member {member_id}")
        return member

    def search(
        self, session: Session, *, identifier: str, programme_id: uuid.UUID | None = None
    ) -> list[Member]:
        """Find members by any identifier: email, phone, card number, external id or id."""
        value = identifier.strip()
        conditions = [
            Member.email == value.lower(),
            Member.card_number == value.replace(" ", ""),
            Member.external_id == value,
            Member.phone == value,
        ]
        if value.startswith("+") or value.startswith("00"):
            from treu.members.schemas import normalise_phone

            try:
                conditions.append(Member.phone == normalise_phone(value))
            except ValueError:
                pass
        try:
            conditions.append(Member.id == uuid.UUID(value))
        except ValueError:
            pass
        query = select(Member).where(or_(*conditions))
        if programme_id is not None:
            query = query.where(Member.programme_id == programme_id)
        return list(session.scalars(query.order_by(Member.id).limit(50)))

    def resolve_many(
        self, session: Session, *, programme_id: uuid.UUID, refs: Iterable[MemberRef]
    ) -> dict[tuple[str, str], MemberKey]:
        """Look up members named by event references: one light query per identifier
        kind (no ORM objects: this runs for every event)."""
        by_kind: dict[str, set[Any]] = defaultdict(set)
        for ref in refs:
            kind = ref.kind
            # member ids as the UUIDs the event carries (not parsed again from text)
            by_kind[kind].add(ref.member_id if kind == "member_id" else ref.value)
        found: dict[tuple[str, str], MemberKey] = {}
        for kind, values in by_kind.items():
            keys = list(values) if kind == "member_id" else sorted(values)
            for member_id, status, *profile, value in _RESOLVE[kind].rows(
                session.connection(), keys, programme_id=programme_id
            ):
                found[(kind, str(value))] = MemberKey(member_id, status, *profile)
        return found

    def resolve_and_lock(
        self, session: Session, *, programme_id: uuid.UUID, ref: MemberRef, writer: LedgerWriter
    ) -> MemberKey | None:
        """One member named by an event, found and its points account locked in one
        statement (the single-event path: a statement less than ``resolve_many`` followed
        by ``LedgerWriter.lock``)."""
        key: Any = uuid.UUID(ref.value) if ref.kind == "member_id" else ref.value
        rows = fetch(
            session.connection(),
            _RESOLVE_AND_LOCK[ref.kind],
            {"programme_id": programme_id, "key": key},
        )
        if not rows:
            return None
        member_id, status, *profile, account_programme, available, pending, lifetime = rows[0]
        writer.adopt(AccountState(member_id, account_programme, available, pending, lifetime))
        return MemberKey(member_id, status, *profile)

    def out(self, member: Member, programme_slug: str) -> MemberOut:
        return MemberOut(
            id=member.id,
            programme=programme_slug,
            status=MemberStatus(member.status),
            card_number=member.card_number,
            email=member.email,
            phone=member.phone,
            external_id=member.external_id,
            first_name=member.first_name,
            last_name=member.last_name,
            birthday=member.birthday,
            language=member.language,
            attributes=member.attributes,
            channel=member.channel,
            enrolled_at=member.enrolled_at,
            created_at=member.created_at,
            updated_at=member.updated_at,
        )

    def _ensure_free(
        self,
        session: Session,
        *,
        programme_id: uuid.UUID,
        values: dict[str, str | None],
        except_id: uuid.UUID | None = None,
    ) -> None:
        given = {field: value for field, value in values.items() if value}
        if not given:
            return
        query = select(Member).where(
            Member.programme_id == programme_id,
            or_(*(getattr(Member, field) == value for field, value in given.items())),
        )
        if except_id is not None:
            query = query.where(Member.id != except_id)
        other = session.scalars(query.limit(1)).first()
        if other is not None:
            field = next(f for f, v in given.items() if getattr(other, f) == v)
            raise IdentifierTaken(
                f"{field} {given[field]!r} belongs to another member of this programme",
                field=field,
            )

    def _free_card_number(self, session: Session, programme_id: uuid.UUID) -> str:
        while True:
            number = new_card_number()
            taken = session.scalar(
                select(Member.id).where(
                    Member.programme_id == programme_id, Member.card_number == number
                )
            )
            if taken is None:
                return number


members = MemberService()
