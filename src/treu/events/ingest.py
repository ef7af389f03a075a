"""Event ingestion: one code path for one event and for a batch of 1,000.

``EventService.ingest`` resolves programmes, members and earlier events with a few
bulk queries, locks the members' accounts in id order, computes every outcome in memory
and writes the successful ones with bulk inserts. An event that fails validation or a
business check gets its own error outcome and writes nothing; the others go ahead.

Idempotency: ``(programme, event id)`` is unique. A replay with the same payload hash
answers the stored result (status 200) and changes nothing; another payload under the
same id is ``idempotency_conflict``. Two concurrent first deliveries of one id cannot
both commit: the loser hits the unique constraint, the entry point retries the unit of
work (``ingest_with_retry``) and then finds the winner's result.

Returns reverse exactly the points that the returned lines earned: the order's points
minus what the kept lines alone would have earned under the same earning basis (rate and
rounding recorded on the purchase), so rounding never favours the member.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Uuid, bindparam, delete, select
from sqlalchemy.orm import Session

from treu.db.base import COPY_THRESHOLD, WriteBatch, lookup, table_of
from treu.errors import Invalid, TreuError
from treu.events.earning import Earning, limited, load_earning
from treu.events.errors import (
    CurrencyMismatch,
    EventInFuture,
    IdempotencyConflict,
    MemberMismatch,
    OriginalEventNotFound,
)
from treu.events.models import Event, PurchaseLine
from treu.events.returns import (
    load_original_lines,
    load_originals,
    process_return,
    write_originals,
)
from treu.events.schemas import (
    AnyEvent,
    Balance,
    EngagementEvent,
    EventAnswer,
    Points,
    PurchaseEvent,
    ReturnEvent,
)
from treu.events.seam import (
    DEFERRED,
    IngestRun,
    Item,
    Original,
    Outcome,
    Reaction,
    ReactionRun,
)
from treu.events.views import earn_basis, line_views, purchase_view
from treu.kit import jsons
from treu.kit.ids import new_id
from treu.kit.time import CLOCK_SKEW, iso, utc_now
from treu.ledger.service import AccountState, ledger
from treu.members.errors import MemberClosed, MemberNotFound
from treu.members.models import MemberStatus
from treu.members.schemas import MemberCreate
from treu.members.service import MemberKey, members
from treu.outbox.service import outbox
from treu.programmes.errors import ProgrammeNotFound
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.engine import EventView
from treu.rules.service import BASE_ID, is_tier_rule

_STORED_EVENTS = lookup(
    lambda condition: select(Event.key, Event.payload_hash, Event.result).where(
        Event.programme_id == bindparam("programme_id", type_=Uuid()), condition
    ),
    Event.key,
)


def payload_hash(event: AnyEvent) -> str:
    """SHA-256 of the event's canonical JSON (keys sorted at every level, UTF-8)."""
    return hashlib.sha256(jsons.dumps_sorted(event.model_dump(mode="json"))).hexdigest()


def legacy_payload_hash(event: AnyEvent) -> str:
    """The hash stored before orjson (``json.dumps``: non-ASCII escaped, Python's float
    spelling), so that replaying an event stored then still answers 200, not 409."""
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def same_payload(known_hash: str, event: AnyEvent, digest: str) -> bool:
    return known_hash == digest or known_hash == legacy_payload_hash(event)


class EventService:
    """The ingest core. ``reactions`` (``treu.events.reactions.REACTIONS`` for the
    service the entry points use) follow every unit of work, in order; the core itself
    names no feature."""

    def __init__(self, reactions: Sequence[Reaction] = ()) -> None:
        self.reactions = tuple(reactions)

    def ingest(
        self,
        session: Session,
        events: list[AnyEvent],
        *,
        now: datetime | None = None,
        optimistic: bool = False,
        defer_locked: bool = False,
        optimistic_budgets: bool = False,
    ) -> list[Outcome]:
        """Process ``events`` in the caller's unit of work.

        ``optimistic``: do not look for earlier deliveries first. A replay then fails on
        the unique ``(programme, key)`` constraint when the writes are flushed, and the
        caller retries without ``optimistic`` (``ingest_with_retry`` does); replays are
        rare, so a single event saves a statement.

        ``defer_locked`` (PostgreSQL): do not wait for accounts another transaction holds.
        The events that need them are left out, with status ``DEFERRED``, and the caller
        runs them in a unit of work of their own after this one has committed
        (``ingest_with_retry`` does). Concurrent batches that share members then do not
        queue behind each other's account locks for the whole batch, only for the shared
        members' events.

        ``optimistic_budgets``: read rule budgets without locking their rows and add to
        them last, guarded (``rules.service.Usage``); ``BudgetRace`` when that does not
        fit, and the caller runs the events again without (``ingest_with_retry`` does)."""
        now = now or utc_now()
        outcomes: dict[int, Outcome] = {}
        hashes = [payload_hash(e) for e in events]

        # 1. programmes
        progs = programmes.cached_by_slug(session, {e.programme for e in events})
        todo: list[int] = []
        for i, event in enumerate(events):
            if event.programme not in progs:
                outcomes[i] = self._fail(
                    i, event, ProgrammeNotFound(f"no programme {event.programme!r}")
                )
            else:
                todo.append(i)

        # 2. replays (stored earlier, or earlier in this very batch)
        stored = (
            {} if optimistic else self._stored_events(session, [events[i] for i in todo], progs)
        )
        first_in_batch: dict[tuple[uuid.UUID, str], int] = {}
        fresh: list[int] = []
        for i in todo:
            event = events[i]
            key = (progs[event.programme].id, event.id)
            if key in stored:
                known_hash, result = stored[key]
                if same_payload(known_hash, event, hashes[i]):
                    outcomes[i] = Outcome(i, event.id, 200, body=EventAnswer.from_public(result))
                else:
                    outcomes[i] = self._fail(i, event, self._conflict(event))
            elif key in first_in_batch:
                fresh.append(i)  # decided after the first copy was processed
            else:
                first_in_batch[key] = i
                fresh.append(i)

        # Checks that need no member come first: a purchase that fails them must not
        # auto-enrol anybody (nothing is half-written).
        for i in fresh:
            event = events[i]
            try:
                if isinstance(event, PurchaseEvent):
                    self._check_purchase(event, progs[event.programme], now)
                elif isinstance(event, EngagementEvent):
                    self._check_engagement(session, event, progs[event.programme], now)
                for reaction in self.reactions:
                    reaction.validate(session, event, progs[event.programme])
            except TreuError as error:
                outcomes[i] = self._fail(i, event, error)

        # 3. members
        writer = ledger.writer(session, now=now)
        run = IngestRun(
            session=session,
            now=now,
            writer=writer,
            events=events,
            programmes=progs,
            fresh=fresh,
            outcomes=outcomes,
        )
        resolved = run.members = self._resolve_members(run)
        originals = run.originals = load_originals(run)
        member_ids = {m.id for m in resolved.values() if m is not None}
        member_ids |= {o.member_id for o in originals.values() if o.member_id is not None}

        if defer_locked and session.connection().dialect.name == "postgresql":
            held = writer.try_lock(member_ids)
            self._defer(run, held)
            member_ids = held

        early = self._lines_first(run)

        # 4. lock accounts (id order), then read what returns need under the lock
        writer.lock(member_ids)  # those held already are skipped
        load_original_lines(session, originals)
        earning = load_earning(run, optimistic_budgets=optimistic_budgets)
        runs: list[ReactionRun] = [reaction.start(run) for reaction in self.reactions]
        for context in earning.values():
            context.tier_book = run.tiers

        # 5. process in order
        event_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        answers: list[EventAnswer] = []
        processed: dict[tuple[uuid.UUID, str], tuple[str, EventAnswer]] = {}
        for i in fresh:
            if i in outcomes:
                continue
            event = events[i]
            programme = progs[event.programme]
            key = (programme.id, event.id)
            if key in processed:  # a second copy in the same batch
                known_hash, first = processed[key]
                outcomes[i] = (
                    Outcome(i, event.id, 200, body=first)
                    if known_hash == hashes[i]
                    else self._fail(i, event, self._conflict(event))
                )
                continue
            item = Item(i, event, programme, resolved.get(i))
            try:
                for reaction_run in runs:
                    reaction_run.check(item)
                if isinstance(event, PurchaseEvent):
                    self._purchase(run, item, event, earning.get(programme.id), early.get(i))
                elif isinstance(event, EngagementEvent):
                    self._engagement(run, item, event, earning[programme.id])
                else:
                    original = originals.get((programme.id, event.original_event_id))
                    if original is None:  # its purchase, earlier in this batch, failed
                        raise OriginalEventNotFound(
                            f"no purchase {event.original_event_id!r} to return against"
                        )
                    ref_member = resolved.get(i)
                    if ref_member is not None and ref_member.id != original.member_id:
                        raise MemberMismatch("the purchase belongs to another member")
                    item.original = original
                    item.row, item.answer = process_return(
                        session, event, programme, original, writer, now
                    )
                for reaction_run in runs:
                    reaction_run.react(item)
            except TreuError as error:
                outcomes[i] = self._fail(i, event, error)
                continue
            row, answer = item.row, item.answer
            assert row is not None
            assert answer is not None
            row["payload_hash"] = hashes[i]
            event_rows.append(row)
            answers.append(answer)
            if i not in early:  # else written before the locks
                line_rows.extend(item.lines)
            processed[key] = (hashes[i], answer)
            outcomes[i] = Outcome(i, event.id, 201, body=answer)

        # 6. write
        self._drop_lines(session, [early[i][0] for i in early if outcomes[i].status != 201])
        batch = WriteBatch()
        batch.insert(table_of(Event), event_rows)
        batch.insert(table_of(PurchaseLine), line_rows)
        for reaction_run in runs:  # before the writer's: reactions may credit points
            reaction_run.flush(batch)
        writer.flush(batch)
        for context in earning.values():
            context.usage.flush(batch)
        write_originals(batch, originals)
        outbox.drain(session, batch, now=now)
        for row, answer in zip(event_rows, answers, strict=True):
            row["result"] = answer.public()  # complete now: reactions' flushes add to it
        added = batch.flush(session.connection())  # budgets' additions last: hot rows
        for context in earning.values():
            context.usage.settle(added)
        return [outcomes[i] for i in range(len(events))]

    # --- steps -------------------------------------------------------------------------

    def _fail(self, index: int, event: AnyEvent, error: TreuError) -> Outcome:
        return Outcome.failed(index, event, error)

    def _conflict(self, event: AnyEvent) -> IdempotencyConflict:
        return IdempotencyConflict(
            f"event {event.id!r} was already received with a different payload"
        )

    def _stored_events(
        self, session: Session, events: list[AnyEvent], progs: dict[str, Programme]
    ) -> dict[tuple[uuid.UUID, str], tuple[str, dict[str, Any]]]:
        keys: dict[uuid.UUID, set[str]] = defaultdict(set)
        for event in events:
            keys[progs[event.programme].id].add(event.id)
        found: dict[tuple[uuid.UUID, str], tuple[str, dict[str, Any]]] = {}
        for programme_id, ids in keys.items():
            rows = _STORED_EVENTS.rows(session.connection(), sorted(ids), programme_id=programme_id)
            for key, hash_, result in rows:
                found[(programme_id, key)] = (hash_, result)
        return found

    def _resolve_members(self, run: IngestRun) -> dict[int, MemberKey | None]:
        session, events, fresh, progs = run.session, run.events, run.fresh, run.programmes
        outcomes, writer = run.outcomes, run.writer
        by_programme: dict[uuid.UUID, list[int]] = defaultdict(list)
        for i in fresh:
            if events[i].member is not None and i not in outcomes:
                by_programme[progs[events[i].programme].id].append(i)
        resolved: dict[int, MemberKey | None] = {}
        for programme_id, indexes in by_programme.items():
            refs = [events[i].member for i in indexes]
            single = events[indexes[0]]
            if len(fresh) == 1 and isinstance(single, PurchaseEvent) and single.member:
                # One purchase: find the member and lock its account in one statement.
                one = members.resolve_and_lock(
                    session, programme_id=programme_id, ref=single.member, writer=writer
                )
                ref_key = (single.member.kind, single.member.value)
                found = {ref_key: one} if one is not None else {}
            else:
                found = members.resolve_many(
                    session, programme_id=programme_id, refs=[r for r in refs if r is not None]
                )
            for i in indexes:
                event = events[i]
                ref = event.member
                assert ref is not None
                member = found.get((ref.kind, ref.value))
                if member is None:
                    programme = progs[event.programme]
                    can_enrol = (
                        programme.auto_enrol
                        and isinstance(event, PurchaseEvent)
                        and ref.kind != "member_id"
                    )
                    if not can_enrol:
                        outcomes[i] = self._fail(
                            i,
                            event,
                            MemberNotFound(
                                f"no member with {ref.kind} {ref.value!r} in programme "
                                f"{programme.slug!r}"
                                + ("" if programme.auto_enrol else " (auto-enrolment is off)")
                            ),
                        )
                        continue
                    assert isinstance(event, PurchaseEvent)
                    try:
                        data = MemberCreate(
                            programme=programme.slug,
                            channel=event.channel,
                            enrolled_at=event.occurred_at,
                            **{ref.kind: ref.value},
                        )
                    except ValidationError as exc:  # e.g. a card number failing the Luhn check
                        message = "; ".join(str(e["msg"]) for e in exc.errors())
                        outcomes[i] = self._fail(
                            i,
                            event,
                            Invalid(
                                f"cannot enrol a member with {ref.kind} {ref.value!r}: {message}",
                                errors=[{"field": f"member.{ref.kind}", "message": message}],
                            ),
                        )
                        continue
                    enrolled = members.enrol(session, programme=programme, data=data, writer=writer)
                    member = MemberKey.of(enrolled)
                    found[(ref.kind, ref.value)] = member
                resolved[i] = member
        return resolved

    def _defer(self, run: IngestRun, held: set[uuid.UUID]) -> None:
        """Mark the events whose accounts are not ``held`` as ``DEFERRED``, together with
        whatever must be decided with them: the other copies of the same event id (the
        first copy decides the rest) and the returns against a deferred purchase of this
        batch (it is not stored yet when they are processed)."""
        events, fresh, progs, outcomes = run.events, run.fresh, run.programmes, run.outcomes
        resolved, originals = run.members, run.originals
        deferred: set[tuple[uuid.UUID, str]] = set()
        for i in fresh:
            event = events[i]
            if i in outcomes:
                continue
            programme_id = progs[event.programme].id
            needed: set[uuid.UUID] = set()
            if (member := resolved.get(i)) is not None:
                needed.add(member.id)
            if isinstance(event, ReturnEvent):
                original = originals.get((programme_id, event.original_event_id))
                if original is not None and original.member_id is not None:
                    needed.add(original.member_id)
            if not needed <= held:
                deferred.add((programme_id, event.id))
        if not deferred:
            return
        grew = True
        while grew:  # a deferred return can defer a purchase of the same id, and so on
            grew = False
            for i in fresh:
                event = events[i]
                if i in outcomes or not isinstance(event, ReturnEvent):
                    continue
                programme_id = progs[event.programme].id
                if (programme_id, event.original_event_id) in deferred and (
                    programme_id,
                    event.id,
                ) not in deferred:
                    deferred.add((programme_id, event.id))
                    grew = True
        for i in fresh:
            event = events[i]
            if i not in outcomes and (progs[event.programme].id, event.id) in deferred:
                outcomes[i] = Outcome(i, event.id, DEFERRED)

    def _check_engagement(
        self, session: Session, event: EngagementEvent, programme: Programme, now: datetime
    ) -> None:
        from treu.rules.event_types import event_types

        if event.occurred_at > now + CLOCK_SKEW:
            raise EventInFuture(f"occurred_at {iso(event.occurred_at)} lies in the future")
        event_types.validate(
            session,
            programme_id=programme.id,
            type=event.type,
            attributes=event.attributes,
            store=event.store,
        )

    def _engagement(
        self, run: IngestRun, item: Item, event: EngagementEvent, context: Earning
    ) -> None:
        member, programme, writer = item.member, item.programme, run.writer
        if member is None:  # resolution failed and was reported already
            raise MemberNotFound("engagement events need a member")
        if member.status == MemberStatus.closed.value:
            raise MemberClosed(f"member {member.id} is closed")
        blocked = member.status == MemberStatus.blocked.value
        account = writer.account(member.id)
        event_uuid = new_id()
        earned = 0
        postings: list[dict[str, Any]] = []
        awarded: dict[str, int] = {}
        if not blocked:
            view = EventView.engagement(
                event.type,
                occurred_at=event.occurred_at,
                timezone=programme.timezone,
                attrs=event.attributes,
                channel=event.channel.value if event.channel else None,
                store=event.store,
            )
            evaluation, _, _ = context.evaluate(view, member, event.occurred_at)
            item.evaluation = evaluation
            earned = evaluation.points
            # Engagement has no return window: its points are available at once.
            postings = context.credit(
                evaluation, writer, account, event.occurred_at, event_uuid, pending=False
            )
            awarded = {a.rule_id: a.points for a in evaluation.awards}
        item.row = {
            "id": event_uuid,
            "programme_id": programme.id,
            "key": event.id,
            "type": event.type,
            "member_id": member.id,
            "occurred_at": event.occurred_at,
            "received_at": writer.now,
            "channel": event.channel.value if event.channel else None,
            "store": event.store,
            "currency": None,
            "total_minor": None,
            "original_event_id": None,
            "data": {
                "attributes": event.attributes,
                "earned": earned,
                "awards": awarded,
                "blocked": blocked,
            },
        }
        item.answer = EventAnswer(
            event.id,
            event.type,
            member.id,
            Points(earned, earned, 0, 0),
            None if account is None else Balance(account.available, account.pending),
            tuple(postings),
            limited=() if item.evaluation is None else limited(item.evaluation),
            note="member is blocked: the event is recorded without points" if blocked else None,
        )

    def _check_purchase(self, event: PurchaseEvent, programme: Programme, now: datetime) -> None:
        if event.currency != programme.currency:
            raise CurrencyMismatch(
                f"programme {programme.slug!r} runs in {programme.currency}, "
                f"the purchase is in {event.currency}"
            )
        if event.occurred_at > now + CLOCK_SKEW:
            raise EventInFuture(f"occurred_at {iso(event.occurred_at)} lies in the future")

    def _purchase(
        self,
        run: IngestRun,
        item: Item,
        event: PurchaseEvent,
        context: Earning | None,
        prepared: tuple[uuid.UUID, list[dict[str, Any]]] | None = None,
    ) -> None:
        """``context``: the programme's earning rules (None when no event of the
        programme can earn); ``prepared``: the event id and line rows ``_lines_first``
        wrote already."""
        writer, now, originals = run.writer, run.now, run.originals
        member, programme = item.member, item.programme
        if member is not None and member.status == MemberStatus.closed.value:
            raise MemberClosed(f"member {member.id} is closed")
        amounts = [line.quantity * line.unit_price_minor for line in event.lines]
        total = sum(amounts)
        basis: dict[str, Any] = dict(earn_basis(programme))
        event_uuid, lines = prepared or self._lines(event, programme, member)
        blocked = member is not None and member.status == MemberStatus.blocked.value
        earned = 0
        postings: list[dict[str, Any]] = []
        awarded: dict[str, int] = {}
        account: AccountState | None = None
        lot_pending = False
        if member is not None:
            account = writer.account(member.id)
        if member is not None and account is not None and not blocked:
            assert context is not None  # every purchase's programme has one
            view = purchase_view(
                programme,
                occurred_at=event.occurred_at,
                currency=event.currency,
                lines=line_views(event.lines),
                channel=event.channel.value,
                store=event.store,
            )
            evaluation, mview, tier = context.evaluate(view, member, event.occurred_at)
            item.evaluation = evaluation
            earned = evaluation.points
            postings = context.credit(
                evaluation, writer, account, event.occurred_at, event_uuid, pending=True
            )
            awarded = evaluation.applied_points()
            versions = {a.rule_id: a.version for a in evaluation.awards}
            versions.update(
                {x.rule_id: x.version for x in evaluation.skipped if x.rule_id in awarded}
            )
            basis = {
                "rules": [[rule_id, versions[rule_id]] for rule_id in awarded],
                "base": [basis["rate"], basis["rounding"]] if BASE_ID in awarded else None,
                "scope": basis["scope"],
                "member": {
                    "days_enrolled": mview.days_enrolled,
                    "birthday_month": mview.birthday_month,
                    **({"tier": tier} if tier is not None else {}),
                },
            }
            # The tier multiplier as it was (for returns); at most one tier rule applies.
            tier_rule = next((rule_id for rule_id in awarded if is_tier_rule(rule_id)), None)
            if tier_rule is not None and context.tier_book is not None:
                factor = context.tier_book.multiplier_of(member.id)
                if factor is not None:
                    basis["tier"] = [tier_rule.split(".", 1)[1], str(factor)]
            lot_pending = earned > 0 and (
                programmes.available_at(programme, event.occurred_at) > now
            )
        data = {"basis": basis, "earned": earned, "awards": awarded, "reversed": 0}
        item.row = {
            "id": event_uuid,
            "programme_id": programme.id,
            "key": event.id,
            "type": "purchase",
            "member_id": member.id if member else None,
            "occurred_at": event.occurred_at,
            "received_at": now,
            "channel": event.channel.value,
            "store": event.store,
            "currency": event.currency,
            "total_minor": total,
            "original_event_id": None,
            "data": {**data, "blocked": blocked},
        }
        item.lines = lines
        # A return later in this batch may name this purchase.
        originals[(programme.id, event.id)] = Original(
            event_uuid,
            event.id,
            member.id if member else None,
            event.currency,
            {**data, "blocked": blocked},
            occurred_at=event.occurred_at,
            channel=event.channel.value,
            store=event.store,
            new_rows=lines,
        )
        pending = earned if lot_pending else 0
        item.answer = EventAnswer(
            event.id,
            "purchase",
            member.id if member else None,
            Points(earned, earned - pending, pending, 0),
            None if account is None else Balance(account.available, account.pending),
            tuple(postings),
            limited=() if item.evaluation is None else limited(item.evaluation),
            note="member is blocked: the purchase is recorded without points" if blocked else None,
        )

    def _lines(
        self, event: PurchaseEvent, programme: Programme, member: MemberKey | None
    ) -> tuple[uuid.UUID, list[dict[str, Any]]]:
        """The purchase's new event id and its purchase-line rows."""
        event_uuid = new_id()
        member_id = member.id if member else None
        return event_uuid, [
            {
                "event_id": event_uuid,
                "programme_id": programme.id,
                "member_id": member_id,
                "occurred_at": event.occurred_at,
                "line_no": n,
                "sku": line.sku,
                "name": line.name,
                "category": line.category,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "tags": list(line.tags),
                "returned_quantity": 0,
            }
            for n, line in enumerate(event.lines, start=1)
        ]

    def _lines_first(self, run: IngestRun) -> dict[int, tuple[uuid.UUID, list[dict[str, Any]]]]:
        """Write a large batch's purchase lines *before* the accounts are locked.

        Concurrent batches that share a member wait for each other's account locks until
        commit, so whatever is written under the locks is written one batch at a time;
        the lines need no lock and were the largest write (3,000 rows for 1,000
        purchases). They carry no foreign key to their event (migration 0010), which is
        written later in the same unit of work; lines of a purchase that fails after all
        are deleted before commit (``_drop_lines``). Only on PostgreSQL (SQLite's writer
        holds the database lock from the start anyway) and only in batches without
        returns (a return updates the lines of a purchase earlier in its batch before
        they are written)."""
        session, events, fresh, progs = run.session, run.events, run.fresh, run.programmes
        outcomes, resolved = run.outcomes, run.members
        if session.connection().dialect.name != "postgresql" or any(
            isinstance(events[i], ReturnEvent) for i in fresh
        ):
            return {}
        purchases: dict[tuple[str, str], tuple[int, PurchaseEvent]] = {}
        for i in fresh:  # a second copy of an event in the batch writes nothing
            event = events[i]
            if isinstance(event, PurchaseEvent) and i not in outcomes:
                purchases.setdefault((event.programme, event.id), (i, event))
        if sum(len(event.lines) for _, event in purchases.values()) < COPY_THRESHOLD:
            return {}  # small: written with the events in one statement or pipeline
        prepared = {
            i: self._lines(event, progs[event.programme], resolved.get(i))
            for i, event in purchases.values()
        }
        rows = [row for _, lines in prepared.values() for row in lines]
        batch = WriteBatch()
        batch.insert(table_of(PurchaseLine), rows)
        batch.flush(session.connection())
        return prepared

    def _drop_lines(self, session: Session, event_ids: list[uuid.UUID]) -> None:
        """Delete lines written early for purchases that then failed."""
        if event_ids:
            session.connection().execute(
                delete(PurchaseLine).where(PurchaseLine.event_id.in_(event_ids))
            )
