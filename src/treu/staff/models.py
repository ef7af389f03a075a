"""``staff_users``: the people who run a programme in the admin console.

Only an argon2 hash of a password is stored (``pwdlib``). A new account, and one whose
password an admin reset, holds a one-time password and ``must_change_password``: the
console lets it do nothing but choose its own. ``totp_secret`` is set when the user
starts setting up a second factor and counts only once ``totp_enabled`` (they proved it
with a code); ``totp_last_step`` is the time step of the last code accepted, so a code
seen over someone's shoulder cannot be used a second time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin


class StaffUser(IdMixin, TimestampMixin, Base):
    __tablename__ = "staff_users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    """Lower-cased: one account per address whatever its spelling."""
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    must_change_password: Mapped[bool] = mapped_column(default=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int | None]
    failed_attempts: Mapped[int] = mapped_column(default=0)
    """Failed sign-ins since the last success; ``LOCK_AFTER`` of them lock the account."""
    locked_until: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
