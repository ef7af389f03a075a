"""Ingest with an active bonus campaign and a webhook subscription, side by side with
ingest without them (``make bench --only ingest_campaign``).

Two programmes of the same size on the same server: ``bench-plain`` as it is, and
``bench-bonus`` with a running bonus campaign (x3 on lines tagged ``organic``, window
around now, audience all, 10 % holdout, a budget it cannot spend) and one webhook
subscription to ``points.earned`` pointing at a local receiver
(``benchmarks.sinks http``, a process of its own). ``run.py`` measures single-event
saturation on each, alternating A, B, A, B so that drift (other work on the machine, a
growing database) falls on both.

No delivery worker runs while those phases are measured (``treu serve`` does not
deliver): the figure is the ingest's own cost of the campaign — evaluating it, writing
exposures and spending the budget — and of the subscription, whose deliveries the
worker plans later from the outbox rows every purchase writes in either programme.
Afterwards ``check`` drains the outbox with one worker and verifies that every
``points.earned`` of ``bench-bonus`` arrived at the receiver. As information, a last
phase repeats B while a delivery worker (``python -m benchmarks.campaign drain``, its
own process) delivers concurrently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import distinct, func, select

from benchmarks.workload import Fixture, prepare
from treu.campaigns.models import Campaign, CampaignExposure
from treu.campaigns.service import campaigns, parse_spec
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.delivery.worker import Deliverer
from treu.events.models import Event
from treu.kit.time import utc_now
from treu.outbox.models import OutboxMessage
from treu.programmes.service import programmes
from treu.webhooks.channel import WebhookChannel
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import webhooks

PLAIN = "bench-plain"
BONUS = "bench-bonus"
HOLDOUT = 10
BUDGET = 1_000_000_000
THREADS = Settings.model_fields["delivery_threads"].default
BATCH = Settings.model_fields["delivery_batch"].default


@dataclass
class CampaignFixture:
    plain: Fixture
    bonus: Fixture
    campaign_id: uuid.UUID
    rule_id: uuid.UUID
    sink_port: int
    setup_seconds: float


def prepare_campaign(db: Database, *, members_count: int, sink_port: int) -> CampaignFixture:
    """Both programmes, the campaign (activated) and the subscription."""
    started = time.perf_counter()
    # Points available at once (no pending days): a purchase's outbox event is then
    # ``points.earned``, the type the webhook subscribes to; the same for both.
    plain = prepare(db, members_count=members_count, slug=PLAIN, seed=29, pending_days=0)
    bonus = prepare(db, members_count=members_count, slug=BONUS, seed=31, pending_days=0)
    now = utc_now()
    with db.unit_of_work() as session:
        programme = programmes.get(session, BONUS)
        campaign = campaigns.create(
            session,
            programme=programme,
            spec=parse_spec(
                {
                    "code": "bio-woche",
                    "name": "Bio-Woche",
                    "window": {
                        "starts_at": (now - timedelta(days=1)).isoformat(),
                        "ends_at": (now + timedelta(days=7)).isoformat(),
                    },
                    "boost": {
                        "type": "multiplier",
                        "factor": "3",
                        "line_condition": "'organic' in line.tags",
                    },
                    "holdout_percent": HOLDOUT,
                    "budget_points": BUDGET,
                }
            ),
            actor="bench",
        )
        campaigns.activate(session, campaign, actor="bench", now=now)
        webhooks.create(
            session,
            data=WebhookIn(
                url=f"http://127.0.0.1:{sink_port}/hooks",
                events=["points.earned"],
                programme=BONUS,
            ),
            actor="bench",
            allow_private=True,
        )
        campaign_id, rule_id = campaign.id, campaign.rule_id
    return CampaignFixture(
        plain, bonus, campaign_id, rule_id, sink_port, time.perf_counter() - started
    )


def arrived(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/count").text)


class ConcurrentWorker:
    """``python -m benchmarks.campaign drain``: one delivery worker in a process of its
    own, delivering while the load runs (started and stopped around one phase)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ConcurrentWorker:
        env = dict(os.environ, TREU_DATABASE_URL=self.url, TREU_ENV="development")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.campaign", "drain"], env=env
        )
        time.sleep(1.0)  # imports and the first (empty) round
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []


def check(db: Database, fixture: CampaignFixture, *, answered: dict[str, int]) -> dict[str, Any]:
    """What the phases stored, then the drain: one worker delivers everything that is
    left, and every ``points.earned`` of the campaign programme must have arrived."""
    plain_id = uuid.UUID(fixture.plain.programme_id)
    bonus_id = uuid.UUID(fixture.bonus.programme_id)
    with db.unit_of_work(write=False) as session:
        purchases = dict(
            session.execute(
                select(Event.programme_id, func.count())
                .where(Event.programme_id.in_([plain_id, bonus_id]), Event.type == "purchase")
                .group_by(Event.programme_id)
            ).all()
        )
        buyers = session.scalar(
            select(func.count(distinct(Event.member_id))).where(
                Event.programme_id == bonus_id, Event.type == "purchase"
            )
        )
        arms = dict(
            session.execute(
                select(CampaignExposure.arm, func.count())
                .where(CampaignExposure.campaign_id == fixture.campaign_id)
                .group_by(CampaignExposure.arm)
            ).all()
        )
        campaign_points = campaigns.budgets_used(
            session, [campaigns.get(session, fixture.campaign_id)]
        ).get(fixture.campaign_id)
        earned = session.scalar(
            select(func.count()).where(
                OutboxMessage.programme_id == bonus_id, OutboxMessage.type == "points.earned"
            )
        )
        status = session.scalar(select(Campaign.status).where(Campaign.id == fixture.campaign_id))
    settings = Settings(_env_file=None, database_url=db.url, env="development")
    before = arrived(fixture.sink_port)
    worker = Deliverer(db, [WebhookChannel(settings, db=db)], threads=THREADS, batch=BATCH)
    try:
        started = time.perf_counter()
        done = worker.run_once()
        drain_seconds = time.perf_counter() - started
    finally:
        worker.close()
    total_arrived = arrived(fixture.sink_port)
    with db.unit_of_work(write=False) as session:
        states = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.channel == "webhook")
                .group_by(Delivery.status)
            ).all()
        )
    exposures = sum(arms.values())
    held = int(arms.get("held_out", 0))
    stored = {PLAIN: int(purchases.get(plain_id, 0)), BONUS: int(purchases.get(bonus_id, 0))}
    ok = (
        stored == answered
        and exposures == buyers
        and exposures > 0
        and 0.05 <= held / exposures <= 0.15
        and int(campaign_points or 0) > 0
        and status == "active"
        and total_arrived == earned
        and states == {"delivered": earned}
    )
    return {
        "purchases_in_db": stored,
        "answered_201": answered,
        "bonus_buyers": int(buyers or 0),
        "exposures": {str(k): int(v) for k, v in arms.items()},
        "campaign_points": int(campaign_points or 0),
        "campaign_status": status,
        "points_earned_outbox_rows": int(earned or 0),
        "webhooks_before_drain": before,
        "drain": {
            "seconds": round(drain_seconds, 2),
            "dispatched": done.dispatched,
            "sent": done.sent,
            "failed": done.failed,
            "dead": done.dead,
        },
        "webhooks_arrived": total_arrived,
        "webhook_deliveries": {str(k): int(v) for k, v in states.items()},
        "ok": ok,
    }


def drain_forever() -> None:
    """One delivery worker (webhooks) on ``TREU_DATABASE_URL`` until SIGTERM."""
    settings = Settings(
        _env_file=None, database_url=os.environ["TREU_DATABASE_URL"], env="development"
    )
    db = Database(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = Deliverer(db, [WebhookChannel(settings, db=db)], threads=THREADS, batch=BATCH)
    try:
        worker.run_forever(stop, poll_seconds=0.2)
    finally:
        worker.close()
        db.dispose()


if __name__ == "__main__":
    {"drain": drain_forever}[sys.argv[1]]()
