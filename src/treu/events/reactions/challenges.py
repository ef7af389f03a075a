"""Challenges count the events, complete periods and award their points and badges."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from treu.challenges.book import ChallengeAnswer, ChallengeBook
from treu.challenges.service import challenges
from treu.db.base import WriteBatch
from treu.events.schemas import AnyEvent, EventAnswer
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme
from treu.rules.badges import BadgeBook


class ChallengeReaction:
    name = "challenges"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        """Badges are awarded through the badges reaction's book, shared with the
        earning rules (a book of its own where that reaction is not in the list)."""
        badges = run.badges or BadgeBook(run.session, now=run.now)
        return _Progress(run, challenges.book(run.session, run.writer, badges))


class _Progress(ReactionRun):
    def __init__(self, run: IngestRun, book: ChallengeBook) -> None:
        self.run = run
        self.book = book
        self.answers: list[tuple[EventAnswer, ChallengeAnswer]] = []

    def react(self, item: Item) -> None:
        row, answer, tiers = item.row, item.answer, self.run.tiers
        assert row is not None
        assert answer is not None
        member_id = row["member_id"]
        recorded = self.book.record(
            item.programme,
            item.member,
            row,
            item.lines,
            self.run.originals,
            tier=tiers.tier_of(member_id) if tiers is not None and member_id else None,
        )
        if recorded is not None:
            self.answers.append((answer, recorded))

    def flush(self, batch: WriteBatch) -> None:
        self.book.flush(batch)  # awards are postings: before the ledger writer's flush
        for answer, recorded in self.answers:
            if recorded.steps:
                answer.challenges = recorded.steps
            balance = answer.balance
            if recorded.awarded and balance is not None:
                # The answer showed the balance before the book's (later) awards.
                answer.balance = replace(balance, available=balance.available + recorded.awarded)
        self.answers = []
