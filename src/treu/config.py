"""Settings: one object, read from ``TREU_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("var") / "treu.db"

DEV_SECRET_KEY = "treu-development-secret-key-not-for-production"
"""What signs links in development mode when ``TREU_SECRET_KEY`` is not set: anyone can
read it here, so production refuses to send mail without a key of its own."""
DEV_SMTP_FROM = "Treu <treu@localhost>"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TREU_", env_file=".env", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    """SQLite file (embedded default) or any ``postgresql+psycopg://`` URL."""
    db_pool_size: int = 10
    db_max_overflow: int = 10
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 8
    """Threads per API process running request handlers. One process runs Python on one
    core at a time, so more threads than this only add hand-offs and lock contention."""
    log_level: str = "info"
    api_key_cache_seconds: float = 10.0
    """How long a verified API key is trusted without asking the database again."""
    web_session_cache_seconds: float = 5.0
    """How long a process trusts a portal or console session it has read without reading
    it again (``treu.web.signed``); its own changes to sessions and accounts end the
    trust at once, other processes' within this time. 0 reads it on every page view."""
    worker_activate_every_seconds: int = 300
    worker_expire_every_seconds: int = 3600
    worker_expiring_every_seconds: int = 3600
    """``ledger.warn_expiring``: a notice per member and expiry date, recorded once."""
    worker_tiers_every_seconds: int = 3600
    """``tiers.reevaluate``: a daily job in effect (each member is due once a day at
    most); running it hourly picks up a new day soon after midnight."""
    worker_coupons_every_seconds: int = 3600
    worker_journeys_every_seconds: int = 3600
    """How often ``journeys.daily`` runs (birthdays, inactivity, expiring points, tiers at
    risk, the monthly thank-you, first purchases that earned nothing)."""
    """``rewards.expire_coupons``: coupons expire after days, but an expired coupon holds
    a popular reward's stock (and, per reward, the member's points) until this runs."""
    worker_segments_every_seconds: int = 21600
    """``segments.refresh``: RFM scores and the members of every active segment, per
    programme (every 6 hours; metrics count whole days)."""
    worker_insights_every_seconds: int = 86_400
    """``insights.train``: every model and score, once a day (minutes at a million
    members; docs/performance.md)."""
    worker_offers_every_seconds: int = 60
    """``campaigns.offers``: gives activated offers whose window has started (an offer
    activated inside its window is given by the activation itself; this finishes one
    that was interrupted)."""
    env: Literal["production", "development"] = "production"
    """``development`` (what ``make run`` sets) adds the development mailbox and lets
    webhooks reach loopback and private addresses; never set it on a shared server."""
    delivery_threads: int = 8
    """Sends in flight at once per worker (they wait on the network, not on Python)."""
    delivery_batch: int = 200
    """Deliveries a worker claims per round."""
    delivery_lease_seconds: float = 60.0
    """How long a claimed delivery is the claiming worker's; a worker killed mid-send
    leaves its claims to be sent again after this."""
    delivery_max_attempts: int = 12
    delivery_backoff_seconds: float = 10.0
    """The first retry's wait; each further retry waits twice as long (with jitter)."""
    delivery_backoff_cap_seconds: float = 3600.0
    delivery_poll_seconds: float = 1.0
    """How long an idle worker waits before looking at the outbox again."""
    webhook_timeout_seconds: float = 10.0
    """How long a webhook receiver may take to accept the connection, to take the
    request and to answer (each); longer is a failed try."""
    webhook_disable_after: int = 20
    """Failed sends in a row after which a webhook endpoint is disabled."""
    smtp_host: str | None = None
    """The SMTP server e-mail goes through. Without it, development mode keeps mail in
    the development mailbox (``/dev/mailbox``) and production sends no e-mail."""
    smtp_port: int = 587
    """587 (submission with STARTTLS) by default; 465 speaks TLS from the first byte."""
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    """Require STARTTLS (a server that does not offer it gets no mail, never plain text)."""
    smtp_from: str | None = None
    """The sender, e.g. ``Treu Demo <hallo@example.com>``; required with ``smtp_host`` in
    production."""
    smtp_timeout_seconds: float = 30.0
    marketing_cap_per_7_days: int = 3
    """Marketing e-mails a member gets in any 7 days at most; more are not sent."""
    secret_key: SecretStr | None = None
    """Signs unsubscribe links (HMAC). Required in production when ``smtp_host`` is set;
    development mode falls back to a fixed key. Changing it breaks links already sent."""
    public_url: str = "http://127.0.0.1:8000"
    """Where members reach this server: the base of unsubscribe links in e-mails."""
    wallet_cert: Path | None = None
    """Apple Wallet: the pass type certificate (PEM). With ``wallet_key``,
    ``wallet_pass_type_id`` and ``wallet_team_id`` the portal offers a signed ``.pkpass``
    of the member's card; without them a PNG card image (docs/portal.md)."""
    wallet_key: Path | None = None
    """The certificate's private key (PEM)."""
    wallet_key_password: SecretStr | None = None
    wallet_pass_type_id: str | None = None
    """e.g. ``pass.com.example.loyalty``."""
    wallet_team_id: str | None = None
    wallet_wwdr: Path | None = None
    """Apple's WWDR intermediate certificate (PEM), included in each pass's signature."""
    serve_worker: bool | None = None
    """Run the worker's loops inside ``treu serve`` (default: in development only)."""
    batch_max_events: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    """The largest request body the API reads (413 ``payload_too_large`` beyond it). A
    batch of 1,000 three-line purchases is about 0.6 MB."""

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgres://")
        elif value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if not (value.startswith("sqlite") or value.startswith("postgresql")):
            raise ValueError("TREU_DATABASE_URL must be an sqlite:/// or postgresql:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("TREU_PUBLIC_URL must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mail_needs_a_key(self) -> Settings:
        if self.env != "production" or not self.smtp_host:
            return self
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < 16:
            raise ValueError(
                "TREU_SECRET_KEY is required (at least 16 characters) when TREU_SMTP_HOST is "
                "set in production: it signs the unsubscribe links in every e-mail. Make one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if not self.smtp_from:
            raise ValueError(
                "TREU_SMTP_FROM is required when TREU_SMTP_HOST is set in production, "
                "e.g. TREU_SMTP_FROM='Treu Demo <hallo@example.com>'"
            )
        return self

    def wallet_ready(self) -> bool:
        """Whether Apple Wallet passes can be signed."""
        return bool(
            self.wallet_cert
            and self.wallet_key
            and self.wallet_pass_type_id
            and self.wallet_team_id
        )

    def signing_key(self) -> bytes | None:
        """The key of signed links: ``secret_key``, else in development a fixed one,
        else None (production without a key signs and accepts no link)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if self.env == "development":
            return DEV_SECRET_KEY.encode()
        return None

    @field_validator("workers", "threads", "db_pool_size", "batch_max_events", "max_body_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
