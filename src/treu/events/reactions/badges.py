"""Badges the earning rules give, each code once per member (challenges award theirs
through the same book, ``run.badges``)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from treu.db.base import WriteBatch
from treu.events.schemas import AnyEvent, ReturnEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme
from treu.rules.badges import BadgeBook
from treu.rules.spec import Badge


class BadgeReaction:
    name = "badges"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        """The book of this unit of work; what the members hold is read with one query
        for all of them when the first badge is awarded."""
        book = run.badges = BadgeBook(run.session, now=run.now)
        for i, event, _programme in run.open():
            member = run.members.get(i)
            if member is not None and not isinstance(event, ReturnEvent):
                book.want(member.id)
        return _Awards(book)


class _Awards(ReactionRun):
    def __init__(self, book: BadgeBook) -> None:
        self.book = book

    def react(self, item: Item) -> None:
        evaluation, row, answer = item.evaluation, item.row, item.answer
        if evaluation is None or not evaluation.badges:
            return
        assert row is not None
        assert answer is not None
        new: list[Badge] = []
        for award in evaluation.badges:
            if self.book.award(
                award.badge,
                member_id=row["member_id"],
                programme_id=item.programme.id,
                event_id=row["id"],
                rule_id=uuid.UUID(award.rule_id),
                rule_version=award.version,
            ):
                new.append(award.badge)
        answer.badges = tuple(new)

    def flush(self, batch: WriteBatch) -> None:
        self.book.flush(batch)  # (the challenges flush the badges they award later)
