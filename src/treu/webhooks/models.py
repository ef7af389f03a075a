from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """A URL that receives the outbox's events of the types it subscribed to.

    The secrets are stored as they are: every send signs with them (HMAC), so they cannot
    be kept as hashes the way API keys are. ``previous_secret`` is the secret before the
    last rotation, signing alongside the new one until ``previous_secret_expires_at``.

    Deliveries name the endpoint in ``deliveries.target`` (its id as text); an endpoint
    is deleted outright, its deliveries stay as the record of what was sent."""

    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    events: Mapped[list[Any]]
    """Event types, e.g. ``points.earned``."""
    programme_id: Mapped[uuid.UUID | None]
    """Only this programme's events; None: every programme's."""
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    """Failed sends since the last one that arrived; at ``TREU_WEBHOOK_DISABLE_AFTER``
    the endpoint is disabled."""
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    """Why it was disabled: the last error of the failures that disabled it, or that an
    admin did."""

    def secrets_at(self, now: datetime) -> list[str]:
        """The secrets that sign a request sent at ``now``, newest first."""
        out = [self.secret]
        if (
            self.previous_secret is not None
            and self.previous_secret_expires_at is not None
            and now < self.previous_secret_expires_at
        ):
            out.append(self.previous_secret)
        return out
