"""What a channel (webhooks, e-mail, inbox, …) plugs into delivery with.

Delivery runs in two steps, each in its own short unit of work, so no row lock is ever
held across the network:

1. **Plan** (``Channel.plan``): the worker takes a batch of outbox rows not yet
   dispatched and asks every channel, in the order of ``treu.worker.channels.build_channels``,
   which deliveries they mean: a webhook per subscribed endpoint, an e-mail per member
   with consent, … Each ``Planned`` has a ``dedupe_key``; a delivery is written once per
   key (``ON CONFLICT DO NOTHING``), so a plan repeated after a crash, or by two workers,
   adds nothing. Everything a send needs that may change later (the rendered message,
   the webhook body) is fixed here, in ``payload``: a retry sends the same bytes.
2. **Send** (``Sender.send``): the worker claims due deliveries under a lease, sends them
   outside any transaction, and records each outcome. A send that raises ``SendFailed``
   is retried with exponential backoff and jitter until ``TREU_DELIVERY_MAX_ATTEMPTS``,
   then the delivery is *dead* with its last error (and can be retried by hand). A worker
   killed mid-send leaves its claims to expire: they are sent again (at least once; the
   receiver dedupes on ``Claimed.id``).

``Channel.settle`` sees every outcome of a round in one unit of work (webhooks count
consecutive failures and disable an endpoint there).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from treu.outbox.models import OutboxMessage


@dataclass(frozen=True, slots=True)
class Planned:
    """One delivery a channel means to make."""

    channel: str
    target: str
    """Whom it goes to, in the channel's terms: an endpoint id, an e-mail address."""
    dedupe_key: str
    """One delivery per key, ever: e.g. ``webhook:<endpoint>:<outbox id>``."""
    event_type: str
    payload: dict[str, Any]
    """What the send needs, fixed at planning (JSON)."""
    programme_id: uuid.UUID
    member_id: uuid.UUID | None = None
    outbox_id: uuid.UUID | None = None
    not_before: datetime | None = None
    """Send no earlier than this (quiet hours delay a message, they never drop it)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds for one send."""

    id: uuid.UUID
    """Stable across retries: the id receivers dedupe on (``webhook-id``, ``Message-ID``)."""
    channel: str
    target: str
    event_type: str
    payload: dict[str, Any]
    programme_id: uuid.UUID
    member_id: uuid.UUID | None
    attempt: int
    """1 for the first send."""
    created_at: datetime


class SendFailed(Exception):
    """A send that did not arrive. ``retry=False`` makes the delivery dead at once (a
    receiver that can never accept it, e.g. an endpoint that was deleted)."""

    def __init__(self, error: str, *, status: int | None = None, retry: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery: Claimed
    error: SendFailed | None
    """None when it arrived."""
    dead: bool = False
    """True when this failure was the last try."""
    status: int | None = None
    """The receiver's answer to an arrival (a webhook's HTTP status), where the channel
    has one; a failure's is ``error.status``."""


class Sender(Protocol):
    """Sends one channel's deliveries; one per worker thread (it may keep a connection)."""

    def send(self, delivery: Claimed) -> int | None:
        """Deliver or raise ``SendFailed``; the receiver's status when it answers with
        one (a webhook's HTTP status), else None. It is kept as the delivery's
        ``last_status``."""
        ...

    def close(self) -> None: ...


class Channel(Protocol):
    name: str

    def plan(
        self, session: Session, messages: Sequence[OutboxMessage], *, now: datetime
    ) -> list[Planned]:
        """The deliveries ``messages`` call for (may be none)."""
        ...

    def sender(self) -> Sender: ...

    def settle(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """See a round's outcomes of this channel, in one unit of work."""
        ...
