"""Earning by the rules in one unit of work of ingestion: each programme's compiled rules
and the limit counters of the members at hand (``Earning``), and the postings an
evaluation credits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from treu.events.schemas import Limited, ReturnEvent
from treu.events.seam import IngestRun, Tiers
from treu.kit.time import local_date
from treu.ledger.service import AccountState, LedgerWriter
from treu.members.service import MemberKey
from treu.programmes.models import Programme
from treu.rules import budgets
from treu.rules.engine import Evaluation, EventView, MemberView, RuleSet, reason_text
from treu.rules.service import (
    BASE_ID,
    Usage,
    award_details,
    is_tier_rule,
    member_view,
    rules,
    segments_for,
)


@dataclass
class Earning:
    """A programme's compiled rules and the limit counters of this unit of work."""

    programme: Programme
    rule_set: RuleSet
    usage: Usage
    tier_book: Tiers | None = None
    """The unit of work's tier state (``member.tier`` for the rules)."""
    segments: dict[uuid.UUID, frozenset[str]] = field(default_factory=dict)
    """The members' segments (``member.segments``), loaded only for rule sets that
    read them (``segments_for``)."""

    def evaluate(
        self, view: EventView, member: MemberKey, at: datetime
    ) -> tuple[Evaluation, MemberView, str | None]:
        """What the rules give the member for the event, what they saw of the member
        and the member's tier."""
        tier = self.tier_book.tier_of(member.id) if self.tier_book else None
        mview = member_view(
            member, self.programme, at, tier=tier, segments=self.segments.get(member.id, ())
        )
        evaluation = self.rule_set.evaluate(view, mview, self.usage.view(member.id, view.date))
        return evaluation, mview, tier

    def credit(
        self,
        evaluation: Evaluation,
        writer: LedgerWriter,
        account: AccountState,
        earned_at: datetime,
        event_id: uuid.UUID,
        *,
        pending: bool,
    ) -> list[dict[str, Any]]:
        """One ``earn`` posting per rule that gave points (as the answer shows them), and
        the limit counters."""
        programme = self.programme
        postings: list[dict[str, Any]] = []
        day = local_date(earned_at, programme.timezone)
        for award in evaluation.awards:
            if award.rule_id != BASE_ID:
                self.usage.record(account.member_id, day, award.rule_id, award.points)
            if award.points <= 0:
                continue
            if award.rule_id == BASE_ID or is_tier_rule(award.rule_id):
                details = award_details(award, programme)
                rule_id, version = None, None
            else:
                details = award.details()
                rule_id, version = uuid.UUID(award.rule_id), award.version
            posting = writer.earn(
                account,
                programme=programme,
                points=award.points,
                earned_at=earned_at,
                event_id=event_id,
                details=details,
                pending=pending,
                rule_id=rule_id,
                rule_version=version,
            )
            postings.append(posting.public())
        return postings


def load_earning(run: IngestRun, *, optimistic_budgets: bool = False) -> dict[uuid.UUID, Earning]:
    """Compiled rules per programme, and the limit counters of the members at hand
    (budgeted rules' rows locked, after the accounts: always in that order)."""
    session, events, progs, resolved = run.session, run.events, run.programmes, run.members
    earning: dict[uuid.UUID, Earning] = {}
    dates: dict[uuid.UUID, list[tuple[uuid.UUID, date]]] = defaultdict(list)
    for i in run.fresh:
        event = events[i]
        if i in run.outcomes or isinstance(event, ReturnEvent):
            continue
        programme = progs[event.programme]
        if programme.id not in earning:
            active = rules.active(session, programme)
            earning[programme.id] = Earning(
                programme,
                active.rule_set,
                Usage(session, dict(active.limited), optimistic=optimistic_budgets),
            )
        member = resolved.get(i)
        if member is not None:
            dates[programme.id].append(
                (member.id, local_date(event.occurred_at, programme.timezone))
            )
    locked = None
    if not optimistic_budgets:  # every programme's budgets in one call, in rule order
        budgeted = [
            rid
            for programme_id, context in earning.items()
            if dates[programme_id]
            for rid in context.usage.budgeted()
        ]
        locked = budgets.lock(session.connection(), budgeted) if budgeted else {}
    for programme_id, context in earning.items():
        if context.usage.specs:
            context.usage.load(dates[programme_id], locked=locked)
        context.segments = segments_for(
            session, context.rule_set, {member_id for member_id, _ in dates[programme_id]}
        )
    return earning


def limited(evaluation: Evaluation) -> tuple[Limited, ...]:
    """Rules a limit or budget stopped or capped: the answer says so."""
    stopped = [
        Limited(skip.rule_id, skip.rule_name, skip.text("en"))
        for skip in evaluation.skipped
        if skip.reason.startswith("limit") or skip.reason == "budget"
    ]
    capped = [
        Limited(award.rule_id, award.rule_name, f"capped: {reason_text(award.limited_by)}")
        for award in evaluation.awards
        if award.limited_by
    ]
    return (*stopped, *capped)
