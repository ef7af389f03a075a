"""E-mail end to end over a real SMTP server (aiosmtpd on the loopback interface): an
enrolled member's welcome goes out through the delivery worker as one multipart message
in the member's language, with one-click unsubscribe headers and a Message-ID that a
retry keeps."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.messaging.conftest import PUBLIC_URL, SECRET, SmtpServer, free_port, smtp_settings
from treu.db.session import Database
from treu.delivery.channel import Claimed, SendFailed
from treu.delivery.models import Delivery
from treu.delivery.service import Backoff
from treu.delivery.worker import Deliverer
from treu.kit.time import utc_now
from treu.messaging.channel import EmailChannel, email_channels
from treu.messaging.consents import read_unsubscribe_token
from treu.messaging.email import SmtpConfig, SmtpSender, send_failed

NOW_AGAIN = Backoff(base_seconds=0.0, cap_seconds=0.0, max_attempts=3)
"""A failed send is due again at once: one ``run_once`` sees a retry through."""


def deliver(db: Database, channel: EmailChannel) -> None:
    deliverer = Deliverer(db, [channel], threads=2, backoff=NOW_AGAIN)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


@pytest.mark.parametrize(
    ("language", "greeting", "subject"),
    [
        ("de", "schön, dass du dabei bist", "Willkommen bei Test programme!"),
        ("en", "great to have you with us", "Welcome to Test programme!"),
    ],
)
def test_an_enrolled_member_gets_one_multipart_welcome_in_their_language(
    fresh_db: Database, smtp_server: SmtpServer, language: str, greeting: str, subject: str
) -> None:
    prog = f.programme(fresh_db)
    address = f"{f.unique('anna')}@example.com"
    who = f.member(fresh_db, prog, email=address, first_name="Anna", language=language)
    deliver(fresh_db, EmailChannel(smtp_settings(fresh_db, smtp_server)))

    [message] = smtp_server.collector.messages
    assert message["To"] == address
    assert message["From"] == "Treu Test <treu@example.com>"
    assert message["Subject"] == subject
    assert message["Content-Language"] == language
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)
    assert greeting in text
    assert greeting in html
    assert who.card_number in text
    # RFC 8058 one-click unsubscribe, and the same link in the text
    link = str(message["List-Unsubscribe"]).strip()  # folded: a long line
    assert link.startswith(f"<{PUBLIC_URL}/u/")
    assert link.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = link[1:-1]
    assert url in text
    assert f'href="{url}"' in html
    named = read_unsubscribe_token(SECRET.encode(), url.rsplit("/", 1)[1])
    assert (named.member_id, named.channel.value) == (who.id, "email")


def test_a_retry_sends_the_same_message_id(fresh_db: Database, smtp_server: SmtpServer) -> None:
    """The server answers the first try with 451 (try again later); the second try is
    the same message, with the same Message-ID — made from the delivery id."""
    prog = f.programme(fresh_db)
    who = f.member(fresh_db, prog, language="de")
    smtp_server.collector.fail_next.append("451 4.3.0 Temporary local problem, try later")
    deliver(fresh_db, EmailChannel(smtp_settings(fresh_db, smtp_server)))

    first, second = smtp_server.collector.attempts
    [accepted] = smtp_server.collector.messages
    assert accepted is second
    assert first["Message-ID"] == second["Message-ID"]
    assert parts(first) == parts(second)
    assert first["Subject"] == second["Subject"]
    with fresh_db.unit_of_work(write=False) as session:
        [delivery] = session.scalars(select(Delivery).where(Delivery.member_id == who.id)).all()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert delivery.dedupe_key.startswith("email:")
    assert first["Message-ID"] == f"<{delivery.id}@example.com>"


def test_a_permanent_refusal_of_the_recipient_is_not_retried(
    fresh_db: Database, smtp_server: SmtpServer
) -> None:
    prog = f.programme(fresh_db)
    address = f"{f.unique('gone')}@example.com"
    who = f.member(fresh_db, prog, email=address)
    smtp_server.collector.refuse.add(address)
    deliver(fresh_db, EmailChannel(smtp_settings(fresh_db, smtp_server)))
    assert smtp_server.collector.messages == []
    with fresh_db.unit_of_work(write=False) as session:
        [delivery] = session.scalars(select(Delivery).where(Delivery.member_id == who.id)).all()
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("dead", 1, 550)
    assert "550" in (delivery.last_error or "")


def test_one_connection_carries_many_messages_and_a_lost_one_is_reopened(
    fresh_db: Database, smtp_server: SmtpServer
) -> None:
    prog = f.programme(fresh_db)
    members_ = [f.member(fresh_db, prog) for _ in range(3)]
    channel = EmailChannel(smtp_settings(fresh_db, smtp_server))
    deliver(fresh_db, channel)
    assert sorted(m["To"] for m in smtp_server.collector.messages) == sorted(
        str(m.email) for m in members_
    )
    # a connection the server closed while idle: the next send opens a new one
    sender = SmtpSender(SmtpConfig.of(smtp_settings(fresh_db, smtp_server)))
    payload = {"to": "x@example.com", "subject": "s", "text": "t", "html": "<p>h</p>"}
    claimed = Claimed(
        id=uuid.uuid4(),
        channel="email",
        target="x@example.com",
        event_type="member.enrolled",
        payload=payload,
        programme_id=prog.id,
        member_id=None,
        attempt=1,
        created_at=utc_now(),
    )
    sender.send(claimed)
    assert sender._smtp is not None
    sender._smtp.close()  # the server's idle timeout, as the client sees it
    sender.send(claimed)
    sender.close()
    assert len(smtp_server.collector.to("x@example.com")) == 2


def test_smtp_errors_become_send_failures() -> None:
    refused = send_failed(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")}))
    assert (refused.retry, refused.status) == (False, 550)
    full = send_failed(smtplib.SMTPRecipientsRefused({"a@example.com": (452, b"full")}))
    assert (full.retry, full.status) == (True, 452)
    later = send_failed(smtplib.SMTPDataError(451, b"later"))
    assert (later.retry, later.status) == (True, 451)
    rejected = send_failed(smtplib.SMTPDataError(554, b"rejected"))
    assert (rejected.retry, rejected.status) == (False, 554)
    login = send_failed(smtplib.SMTPAuthenticationError(535, b"bad credentials"))
    assert (login.retry, login.status) == (True, 535)  # Treu's setup: fix it, then they go
    lost = send_failed(ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(lost, SendFailed)
    assert lost.retry
    assert "ConnectionRefusedError" in lost.error


def test_an_unreachable_server_fails_for_a_retry() -> None:
    sender = SmtpSender(SmtpConfig(host="127.0.0.1", port=free_port(), timeout=2.0))
    claimed = Claimed(
        id=uuid.uuid4(),
        channel="email",
        target="x@example.com",
        event_type="member.enrolled",
        payload={"to": "x@example.com", "subject": "s", "text": "t", "html": "h"},
        programme_id=uuid.uuid4(),
        member_id=None,
        attempt=1,
        created_at=utc_now(),
    )
    with pytest.raises(SendFailed) as caught:
        sender.send(claimed)
    assert caught.value.retry


def test_production_without_an_smtp_host_builds_no_email_channel(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from treu.config import Settings
    from treu.messaging import channel as module

    module._warned = False
    with caplog.at_level("WARNING", logger="treu.messaging"):
        assert email_channels(Settings(database_url=db.url, env="production")) == []
        assert email_channels(Settings(database_url=db.url, env="production")) == []
    assert [r.getMessage() for r in caplog.records].count(
        "TREU_SMTP_HOST is not set: no e-mail is sent (docs/email.md)"
    ) == 1
    [dev] = email_channels(Settings(database_url=db.url, env="development"))
    assert dev.name == "email"


def test_production_with_smtp_needs_a_secret_key_and_a_sender() -> None:
    from pydantic import ValidationError

    from treu.config import Settings

    with pytest.raises(ValidationError, match="TREU_SECRET_KEY is required"):
        Settings(env="production", smtp_host="mail.example.com", smtp_from="a@example.com")
    with pytest.raises(ValidationError, match="TREU_SMTP_FROM is required"):
        Settings(env="production", smtp_host="mail.example.com", secret_key=SECRET)
    Settings(env="development", smtp_host="mail.example.com")  # the fixed development key
    assert Settings(env="development").signing_key()
    assert Settings(env="production").signing_key() is None
