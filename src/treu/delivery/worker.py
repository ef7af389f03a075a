"""The delivery loop a worker runs: plan what the outbox holds, then send what is due.

Sends run on a small thread pool (network waits, not Python, are what a send spends its
time on); each thread keeps one ``Sender`` per channel, so an SMTP connection or an HTTP
connection pool is reused across messages. Planning and recording are short units of
work on the calling thread.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from treu.db.session import Database
from treu.delivery.channel import Channel, Claimed, Outcome, Sender
from treu.delivery.service import Backoff, deliveries
from treu.kit.time import utc_now

log = logging.getLogger("treu.delivery")

MAX_ROUNDS = 10_000
"""A guard against a loop that keeps finding work it cannot finish."""


@dataclass
class Round:
    dispatched: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0

    def __iadd__(self, other: Round) -> Round:
        self.dispatched += other.dispatched
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        return self

    @property
    def busy(self) -> bool:
        return bool(self.dispatched or self.sent or self.failed or self.dead)


@dataclass
class Deliverer:
    db: Database
    channels: Sequence[Channel]
    batch: int = 200
    threads: int = 8
    lease: timedelta = timedelta(seconds=60)
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.channels}
        self._local = threading.local()
        self._senders: list[Sender] = []
        self._senders_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="treu-delivery")

    # --- one step at a time ----------------------------------------------------------------

    def dispatch(self) -> int:
        """Plan one batch of outbox rows; returns how many were planned."""
        with self.db.unit_of_work() as session:
            return deliveries.dispatch(session, self.channels, now=self.clock(), limit=500)

    def deliver(self) -> Round:
        """Claim, send and record one batch of due deliveries."""
        with self.db.unit_of_work() as session:
            claimed = deliveries.claim(
                session,
                now=self.clock(),
                limit=self.batch,
                lease=self.lease,
                channels=list(self._by_name),
            )
        if not claimed:
            return Round()
        sent = list(self._pool.map(self._send, claimed))
        outcomes = [
            deliveries.outcome(d, e, backoff=self.backoff, status=status)
            for d, (e, status) in zip(claimed, sent, strict=True)
        ]
        now = self.clock()
        by_channel: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_channel[outcome.delivery.channel].append(outcome)
        with self.db.unit_of_work() as session:
            deliveries.record(session, outcomes, now=now, backoff=self.backoff)
            for name, theirs in by_channel.items():
                self._by_name[name].settle(session, theirs, now=now)
        done = Round(sent=sum(1 for o in outcomes if o.error is None))
        done.dead = sum(1 for o in outcomes if o.dead)
        done.failed = len(outcomes) - done.sent - done.dead
        for outcome in outcomes:
            if outcome.error is not None:
                log.warning(
                    "%s delivery %s (%s, try %d) %s: %s",
                    outcome.delivery.channel,
                    outcome.delivery.id,
                    outcome.delivery.event_type,
                    outcome.delivery.attempt,
                    "dead" if outcome.dead else "failed",
                    outcome.error.error,
                )
        return done

    def run_once(self) -> Round:
        """Everything due now: plan the whole outbox backlog, then send until nothing is
        due (deliveries failing now are due later, so this ends)."""
        total = Round()
        for _ in range(MAX_ROUNDS):
            planned = self.dispatch()
            total.dispatched += planned
            if not planned:
                break
        for _ in range(MAX_ROUNDS):
            done = self.deliver()
            total += done
            if not done.busy:
                break
        return total

    def run_forever(self, stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set; sleep ``poll_seconds`` when there was nothing
        to do. An error (a lost database connection) is logged and retried after the
        pause, never fatal."""
        while not stop.is_set():
            try:
                done = self.dispatch_and_deliver()
            except Exception as exc:
                log.error("delivery round failed: %s: %s", type(exc).__name__, exc)
                log.debug("delivery round failed", exc_info=True)
                done = Round()
            if not done.busy:
                stop.wait(poll_seconds)

    def dispatch_and_deliver(self) -> Round:
        """One planning batch and one sending batch (the loop's step: neither starves)."""
        done = Round(dispatched=self.dispatch())
        done += self.deliver()
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._senders_lock:
            senders, self._senders = self._senders, []
        for sender in senders:
            try:
                sender.close()
            except Exception:
                log.debug("closing a sender failed", exc_info=True)

    # --- on the pool's threads -------------------------------------------------------------

    def _sender(self, channel: str) -> Sender:
        mine: dict[str, Sender] | None = getattr(self._local, "senders", None)
        if mine is None:
            mine = self._local.senders = {}
        sender = mine.get(channel)
        if sender is None:
            sender = mine[channel] = self._by_name[channel].sender()
            with self._senders_lock:
                self._senders.append(sender)
        return sender

    def _send(self, delivery: Claimed) -> tuple[Exception | None, int | None]:
        """The send's error, or None and the receiver's status."""
        try:
            status = self._sender(delivery.channel).send(delivery)
        except Exception as exc:
            return exc, None
        return None, status
