from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base


class JobRun(Base):
    """The last run of each background job, whichever worker ran it (``treu jobs
    status``): one row per job, overwritten by each run."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    """None while it runs (or when the worker running it died)."""
    count: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    """The last run's error; None when it succeeded."""
    runs: Mapped[int]
    failures: Mapped[int]
