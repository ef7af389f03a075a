"""Coupons come back with a fully returned order (where their reward says so)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from treu.events.schemas import AnyEvent, ReturnEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme
from treu.rewards.coupons import coupons


class CouponReaction:
    name = "coupons"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        return _Restore(run)


class _Restore(ReactionRun):
    def __init__(self, run: IngestRun) -> None:
        self.run = run

    def react(self, item: Item) -> None:
        """The whole order came back: coupons used for it (order id = the purchase's
        event id) are usable again where their reward says so. A partial return keeps
        them used: the discount stays with the kept goods."""
        original = item.original
        if not isinstance(item.event, ReturnEvent) or original is None:
            return
        if not original.fully_returned:
            return
        restored = coupons.restore_for_order(
            self.run.session,
            programme_id=item.programme.id,
            order_id=original.key,
            now=self.run.now,
        )
        if restored and item.answer is not None:
            item.answer.coupons_restored = tuple(restored)
