"""Tiers count what events qualify (points, spend, purchases), upgrade at once, sell
memberships, and tell the earning rules each member's tier."""

from __future__ import annotations

from sqlalchemy.orm import Session

from treu.db.base import WriteBatch
from treu.events.schemas import AnyEvent, EngagementEvent, PurchaseEvent, ReturnEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.kit.time import local_date
from treu.programmes.models import Programme
from treu.tiers.book import TierBook, TierChange
from treu.tiers.common import MEMBERSHIP_EVENT
from treu.tiers.service import tiers


class TierReaction:
    name = "tiers"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        if isinstance(event, EngagementEvent) and event.type == MEMBERSHIP_EVENT:
            tiers.check_membership_event(session, programme, event.attributes)

    def start(self, run: IngestRun) -> ReactionRun:
        """The tier state of the members at hand, read in one query after their accounts
        were locked; nothing at all for programmes without tiers."""
        book = tiers.book(run.session, now=run.now)
        for i, event, programme in run.open():
            if not programme.tiers_version:
                continue
            if isinstance(event, ReturnEvent):
                original = run.original_of(programme, event.original_event_id)
                if original is not None and original.member_id is not None:
                    book.want(programme, original.member_id)
                continue
            member = run.members.get(i)
            if member is not None:
                book.want(programme, member.id, local_date(event.occurred_at, programme.timezone))
        book.load()
        run.tiers = book
        return _Activity(run, book)


class _Activity(ReactionRun):
    def __init__(self, run: IngestRun, book: TierBook) -> None:
        self.run = run
        self.book = book

    def check(self, item: Item) -> None:
        """A bought tier that would cut short a higher one is refused before anything."""
        event = item.event
        if (
            isinstance(event, EngagementEvent)
            and event.type == MEMBERSHIP_EVENT
            and item.member is not None
        ):
            self.book.check_buy(item.member.id, str(event.attributes["tier"]), event.occurred_at)

    def react(self, item: Item) -> None:
        """What the event counts towards tiers, and the upgrade it causes (``tier`` in
        the result). Blocked members' events count nothing, as they earn nothing."""
        row, event, book, answer = item.row, item.event, self.book, item.answer
        assert row is not None
        assert answer is not None
        member_id = row["member_id"]
        if member_id is None or not book.tracks(member_id):
            return
        change: TierChange | None = None
        data = row["data"]
        if isinstance(event, ReturnEvent):
            original = item.original
            if original is None or not original.data.get("tiers"):
                return  # the purchase did not count (before tiers, or blocked)
            book.record_return(
                member_id,
                original.occurred_at or event.occurred_at,
                points=int(data.get("reversed", 0)),
                spend_minor=-int(row["total_minor"] or 0),
                purchases=1 if original.fully_returned else 0,
            )
            return
        if isinstance(event, EngagementEvent) and event.type == MEMBERSHIP_EVENT:
            change = book.buy(
                member_id,
                str(event.attributes["tier"]),
                int(event.attributes["months"]),
                event.occurred_at,
                event_id=row["id"],
            )
        if not data.get("blocked"):
            purchase = isinstance(event, PurchaseEvent)
            upgrade = book.record(
                member_id,
                event.occurred_at,
                points=int(data.get("earned", 0)),
                spend_minor=int(row["total_minor"] or 0) if purchase else 0,
                purchases=1 if purchase else 0,
                event_id=row["id"],
            )
            change = upgrade or change
            if purchase:
                data["tiers"] = True
                own = self.run.original_of(item.programme, event.id)
                if own is not None:
                    own.data["tiers"] = True
        if change is not None:
            answer.tier = change

    def flush(self, batch: WriteBatch) -> None:
        self.book.flush(batch)
