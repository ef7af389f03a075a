"""The ``treu`` command line under test: a runner on a given database."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from treu import cli
from treu.db.session import Database


def make_runner(monkeypatch: pytest.MonkeyPatch, db: Database) -> CliRunner:
    """A runner on ``db``, with consoles wide enough that table rows stay on one line
    (under xdist the inherited terminal width would otherwise apply)."""
    monkeypatch.setattr(cli, "open_database", lambda: db)
    monkeypatch.setattr(cli, "console", Console(soft_wrap=True, width=220))
    monkeypatch.setattr(cli, "err", Console(stderr=True, soft_wrap=True, width=220))
    return CliRunner()
