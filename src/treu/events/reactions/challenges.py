"""Challenges count the events, complete periods and award their points and badges."""

from __future__ import annotations

from sqlalchemy.orm import Session

from treu.challenges.book import ChallengeBook
from treu.challenges.service import challenges
from treu.db.base import WriteBatch
from treu.events.schemas import AnyEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme


class ChallengeReaction:
    name = "challenges"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        return _Progress(run, challenges.book(run.session, run.writer))


class _Progress(ReactionRun):
    def __init__(self, run: IngestRun, book: ChallengeBook) -> None:
        self.run = run
        self.book = book

    def react(self, item: Item) -> None:
        assert item.row is not None
        self.book.record(
            item.programme,
            item.member,
            item.row,
            item.lines,
            item.result,
            self.run.originals,
            item.earning,
        )

    def flush(self, batch: WriteBatch) -> None:
        self.book.flush(batch)  # awards are postings: before the ledger writer's flush
