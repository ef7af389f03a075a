"""Integrity of the rows the ingest writes without foreign keys (``treu ledger verify``).

A purchase writes its event, lines, postings and lots with no foreign keys (they cost
eight look-ups per purchase, migration 0010), and purchase lines carry copies of their
event's programme and member (migration 0007). What the database no longer checks is
checked here, on demand."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from treu.events.models import Event, PurchaseLine
from treu.ledger.models import LedgerAdjustment, Lot, Posting
from treu.ledger.service import Discrepancy, counted, in_programme
from treu.members.models import Member
from treu.programmes.models import Programme


def check_references(
    session: Session, *, programme_id: uuid.UUID | None = None
) -> list[Discrepancy]:
    """Purchase lines whose programme or member is not their event's (those copies
    carry no foreign key, migration 0007), and events, lines and postings whose
    parent row is missing (the rows a purchase writes carry no foreign keys,
    migration 0010): ``treu ledger verify`` checks them here (the ledger's own
    references: ``LedgerService.check_references``). A posting's ``event_id`` names an
    event or a manual adjustment (``ledger_adjustments``, which has no foreign keys
    either)."""
    original = aliased(Event)
    event = aliased(Event)

    def missing(child: Any, condition: Any, *joins: tuple[Any, Any]) -> Any:
        """Rows of ``child`` whose parent is missing, counted per member."""
        query = select(child.member_id, func.count())
        for parent, on in joins:
            query = query.outerjoin(parent, on)
        return query.where(condition, *in_programme(child.programme_id, programme_id)).group_by(
            child.member_id
        )

    member = func.coalesce(Event.member_id, PurchaseLine.member_id)
    return counted(
        session,
        {
            "purchase line's programme or member": select(member, func.count())
            .select_from(PurchaseLine)
            .join(Event, Event.id == PurchaseLine.event_id)
            .where(
                or_(
                    PurchaseLine.programme_id != Event.programme_id,
                    PurchaseLine.member_id.is_distinct_from(Event.member_id),
                ),
                *in_programme(Event.programme_id, programme_id),
            )
            .group_by(member),
            "event's programme, member or original purchase missing": missing(
                Event,
                or_(
                    Programme.id.is_(None),
                    Event.member_id.is_not(None) & Member.id.is_(None),
                    Event.original_event_id.is_not(None) & original.id.is_(None),
                ),
                (Programme, Programme.id == Event.programme_id),
                (Member, Member.id == Event.member_id),
                (original, original.id == Event.original_event_id),
            ),
            "purchase line's event missing": missing(
                PurchaseLine, Event.id.is_(None), (Event, Event.id == PurchaseLine.event_id)
            ),
            "posting's member or event missing": missing(
                Posting,
                or_(
                    Member.id.is_(None),
                    Posting.event_id.is_not(None)
                    & event.id.is_(None)
                    & LedgerAdjustment.id.is_(None),
                ),
                (Member, Member.id == Posting.member_id),
                (event, event.id == Posting.event_id),
                (LedgerAdjustment, LedgerAdjustment.id == Posting.event_id),
            ),
            "adjustment's member missing or in another programme": missing(
                LedgerAdjustment,
                or_(Member.id.is_(None), Member.programme_id != LedgerAdjustment.programme_id),
                (Member, Member.id == LedgerAdjustment.member_id),
            ),
            "lot's posting missing": missing(
                Lot, Posting.id.is_(None), (Posting, Posting.id == Lot.posting_id)
            ),
        },
    )
