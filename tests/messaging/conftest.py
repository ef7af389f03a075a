"""Fixtures of the messaging tests: a real SMTP server (aiosmtpd, on the loopback
interface, started per test) that collects what it is sent, and apps built with the
settings a test needs (development or production, SMTP or not)."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from treu.api.app import create_app
from treu.auth.service import SCOPES, api_keys
from treu.config import Settings
from treu.db.session import Database

SECRET = "test-secret-key-0123456789abcdef"
PUBLIC_URL = "https://treu.example"


@dataclass
class Collector:
    """An aiosmtpd handler: every message offered is in ``attempts``, the accepted ones
    in ``messages``. ``fail_next`` holds replies (``"451 …"``) for the next DATA
    commands; ``refuse`` addresses get 550 at RCPT."""

    attempts: list[EmailMessage] = field(default_factory=list)
    messages: list[EmailMessage] = field(default_factory=list)
    fail_next: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.attempts.append(parsed)
        if self.fail_next:
            return self.fail_next.pop(0)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class SmtpServer:
    host: str
    port: int
    collector: Collector


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.hostname, controller.port, collector)
    finally:
        controller.stop()


def smtp_settings(db: Database, server: SmtpServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "env": "production",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_starttls": False,
        "smtp_from": "Treu Test <treu@example.com>",
        "secret_key": SECRET,
        "public_url": PUBLIC_URL,
    }
    values.update(overrides)
    return Settings(**values)


def dev_settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": db.url, "env": "development"}
    values.update(overrides)
    return Settings(**values)


@dataclass
class App:
    client: TestClient
    keys: dict[str, str]
    settings: Settings

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


AppFactory = Callable[..., App]


@pytest.fixture
def app_with(db: Database) -> AppFactory:
    """``app_with(settings=None, database=None)``: the real app on a database (the
    shared one by default) with a key per scope."""

    def make(settings: Settings | None = None, database: Database | None = None) -> App:
        database = database or db
        settings = settings or Settings(database_url=database.url, secret_key=SECRET)
        keys: dict[str, str] = {}
        with database.unit_of_work() as session:
            for scope in SCOPES:
                _, plaintext = api_keys.create(session, name=f"test-{scope}", scopes=[scope])
                keys[scope] = plaintext
        app = create_app(settings, database=database)
        return App(TestClient(app, raise_server_exceptions=False), keys, settings)

    return make
