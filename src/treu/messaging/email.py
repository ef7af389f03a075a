"""E-mail: composing the MIME message of a delivery, and sending it over SMTP.

What a message says is fixed when it is planned (``treu.messaging.channel`` renders
subject, text, HTML and headers into the delivery's payload); this module only wraps
that payload into ``multipart/alternative`` and hands it to the SMTP server, so a retry
sends the same message. Its ``Message-ID`` is made from the delivery id, which every
retry keeps: a receiving server or client that saw the first try drops the second.

One ``SmtpSender`` per worker thread keeps one SMTP connection open across messages
(a new TLS handshake and login per message would cost more than the message). After
any failure the connection is dropped and the next send opens a new one; a connection
that the server closed while idle is reopened once within the same send.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from treu.config import DEV_SMTP_FROM, Settings
from treu.delivery.channel import Claimed, SendFailed
from treu.kit.time import utc_now

log = logging.getLogger("treu.messaging")

PERMANENT_RECIPIENT = 500
"""SMTP replies from 500 on are permanent (RFC 5321 4.2.1): the address does not exist,
the mailbox refuses this message. Retrying cannot help."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = DEV_SMTP_FROM
    timeout: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> SmtpConfig:
        assert settings.smtp_host, "SmtpConfig needs TREU_SMTP_HOST"
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_starttls,
            sender=settings.smtp_from or DEV_SMTP_FROM,
            timeout=settings.smtp_timeout_seconds,
        )


def message_id(delivery_id: object, sender: str) -> str:
    """``<delivery id@sender's domain>``: the same for every try of a delivery."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "treu.invalid"
    return f"<{delivery_id}@{domain}>"


def compose(payload: dict[str, Any], *, delivery_id: object, sender: str) -> EmailMessage:
    """The MIME message of a planned e-mail: ``multipart/alternative`` with the text
    first and the HTML second (clients show the last part they can)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=str(payload["to"]))
    message["Subject"] = str(payload["subject"])
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = message_id(delivery_id, sender)
    for name, value in dict(payload.get("headers") or {}).items():
        message[name] = str(value)
    message.set_content(str(payload["text"]))
    message.add_alternative(str(payload["html"]), subtype="html")
    if payload.get("language"):  # after the parts: setting content drops Content-* headers
        message["Content-Language"] = str(payload["language"])
    return message


def send_failed(exc: Exception) -> SendFailed:
    """The delivery's verdict on an SMTP error: permanent recipient and message
    refusals are final, everything else (4xx, a lost connection, a refused login or
    sender — the server's or Treu's setup, which can be fixed) is tried again."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        worst = max(codes) if codes else None
        detail = "; ".join(
            f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in exc.recipients.items()
        )
        permanent = worst is not None and worst >= PERMANENT_RECIPIENT
        return SendFailed(f"recipient refused: {detail}", status=worst, retry=not permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = int(exc.smtp_code)
        permanent = isinstance(exc, smtplib.SMTPDataError) and code >= PERMANENT_RECIPIENT
        return SendFailed(
            f"{type(exc).__name__}: {code} {_text(exc.smtp_error)}",
            status=code,
            retry=not permanent,
        )
    return SendFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class SmtpSender:
    """Sends deliveries over one SMTP connection (see the module docstring)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def send(self, delivery: Claimed) -> None:
        try:
            message = compose(delivery.payload, delivery_id=delivery.id, sender=self.config.sender)
        except (KeyError, TypeError, ValueError) as exc:  # a payload no retry will mend
            raise SendFailed(f"cannot compose: {type(exc).__name__}: {exc}", retry=False) from exc
        reused = self._smtp is not None
        try:
            self._send(message)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            if not reused:
                raise send_failed(exc) from exc
            try:  # closed while idle: once more on a new connection
                self._send(message)
            except Exception as exc:
                self._drop()
                raise send_failed(exc) from exc
        except Exception as exc:
            self._drop()
            raise send_failed(exc) from exc

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except Exception:
            log.debug("SMTP QUIT failed", exc_info=True)
        self._drop()

    def _send(self, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        self._smtp.send_message(message)

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        smtp: smtplib.SMTP
        if config.port == smtplib.SMTP_SSL_PORT:
            smtp = smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        try:
            smtp.ehlo()
            if config.starttls and config.port != smtplib.SMTP_SSL_PORT:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.user:
                smtp.login(config.user, config.password or "")
        except Exception:
            smtp.close()
            raise
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except Exception:
                log.debug("closing the SMTP connection failed", exc_info=True)
