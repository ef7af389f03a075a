"""Delivery throughput with one worker (``make bench --only delivery``): webhooks to a
local HTTP receiver and e-mail to a local SMTP sink, from
outbox events to recorded deliveries — planning, signing, sending on the worker's
threads and recording included.

Next to it, in the same run, the raw baseline: the same number of plain POSTs of the same
size from the same number of threads, with no database and no signing. The ratio says
what the delivery machinery costs over the network it cannot avoid.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx

from treu.config import Settings
from treu.db.session import Database
from treu.delivery.service import deliveries
from treu.delivery.worker import Deliverer
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.messaging.channel import EmailChannel
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes
from treu.webhooks.channel import WebhookChannel
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import webhooks

THREADS = Settings.model_fields["delivery_threads"].default
BATCH = Settings.model_fields["delivery_batch"].default


@contextmanager
def sink(kind: str) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sinks", kind], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait(10)


def enrol(db: Database, slug: str, count: int, *, email: bool = False) -> None:
    with db.unit_of_work() as session:
        programme = programmes.get(session, slug)
        writer = ledger.writer(session)
        for i in range(count):
            ref = uuid.uuid4().hex
            data: dict[str, Any] = {"programme": slug, "external_id": ref}
            if email:
                data |= {"email": f"m{ref[:12]}@example.com", "language": "de" if i % 2 else "en"}
            members.enrol(
                session,
                programme=programme,
                data=MemberCreate.model_validate(data),
                writer=writer,
            )


def raw_sends(
    count: int, connect: Callable[[], AbstractContextManager[Any]], send: Callable[[Any], Any]
) -> float:
    """``count`` plain sends from ``THREADS`` threads, one connection each (``connect``
    opens it, ``send`` sends one message over it): sends/s."""
    left = iter(range(count))
    lock = threading.Lock()

    def work() -> None:
        with connect() as connection:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                send(connection)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.perf_counter() - started)


def webhooks_per_s(db: Database, count: int) -> dict[str, Any]:
    slug = f"bench-hooks-{uuid.uuid4().hex[:6]}"
    with db.unit_of_work() as session:
        programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {"slug": slug, "name": "Webhooks", "currency": "EUR", "points_per_currency_unit": 1}
            ),
        )
    settings = Settings(_env_file=None, database_url=db.url, env="development")
    with sink("http") as port:
        url = f"http://127.0.0.1:{port}/hooks"
        with db.unit_of_work() as session:
            webhooks.create(
                session,
                data=WebhookIn(url=url, events=["member.enrolled"], programme=slug),
                actor="bench",
                allow_private=True,
            )
        for offset in range(0, count, 1000):
            enrol(db, slug, min(1000, count - offset))
        worker = Deliverer(db, [WebhookChannel(settings, db=db)], threads=THREADS, batch=BATCH)
        try:
            started = time.perf_counter()
            done = worker.run_once()
            seconds = time.perf_counter() - started
        finally:
            worker.close()
        arrived = int(httpx.get(f"http://127.0.0.1:{port}/count").text)
        body = b'{"type":"member.enrolled","timestamp":"2026-12-06T12:00:00Z","data":{}}'
        payload, json_type = body.ljust(240), {"content-type": "application/json"}
        raw = raw_sends(
            count, httpx.Client, lambda client: client.post(url, content=payload, headers=json_type)
        )
    rate = done.sent / seconds
    return {
        "messages": count,
        "sent": done.sent,
        "arrived": arrived,
        "seconds": round(seconds, 2),
        "webhooks_per_s": round(rate),
        "raw_posts_per_s": round(raw),
        "ratio_to_raw": round(rate / raw, 3),
        "threads": THREADS,
        "batch": BATCH,
    }


def emails_per_s(db: Database, count: int) -> dict[str, Any]:
    """Welcome e-mails of ``count`` members, rendered from the templates at planning and
    sent over SMTP to a local sink."""
    slug = f"bench-mail-{uuid.uuid4().hex[:6]}"
    with db.unit_of_work() as session:
        programmes.create(
            session,
            data=ProgrammeCreate.model_validate(
                {"slug": slug, "name": "Mail", "currency": "EUR", "points_per_currency_unit": 1}
            ),
        )
    with sink("smtp") as port:
        settings = Settings(
            _env_file=None,
            database_url=db.url,
            env="development",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_from="Treu Bench <bench@example.com>",
        )
        for offset in range(0, count, 1000):
            enrol(db, slug, min(1000, count - offset), email=True)
        worker = Deliverer(db, [EmailChannel(settings)], threads=THREADS, batch=BATCH)
        try:
            started = time.perf_counter()
            done = worker.run_once()
            seconds = time.perf_counter() - started
        finally:
            worker.close()
        message = EmailMessage()
        message["From"] = "bench@example.com"
        message["To"] = "someone@example.com"
        message["Subject"] = "Willkommen bei Treu!"
        message.set_content("Hallo,\n\n" + "schön, dass du dabei bist. " * 20)
        message.add_alternative("<p>" + "schön, dass du dabei bist. " * 40 + "</p>", "html")
        raw = raw_sends(
            count, lambda: smtplib.SMTP("127.0.0.1", port), lambda smtp: smtp.send_message(message)
        )
    rate = done.sent / seconds
    return {
        "messages": count,
        "sent": done.sent,
        "seconds": round(seconds, 2),
        "emails_per_s": round(rate),
        "raw_smtp_per_s": round(raw),
        "ratio_to_raw": round(rate / raw, 3),
        "threads": THREADS,
        "batch": BATCH,
    }


def run(db: Database, *, quick: bool = False) -> dict[str, Any]:
    count = 1000 if quick else 5000
    # The other parts' purchases are in the outbox too: history to this benchmark, which
    # measures its own messages only.
    with db.unit_of_work() as session:
        now = utc_now()
        deliveries.skip_history(session, before=now + timedelta(seconds=1), now=now)
    return {"webhooks": webhooks_per_s(db, count), "email": emails_per_s(db, count)}
