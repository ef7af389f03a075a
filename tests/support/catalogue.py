"""The console's catalogue pages (rewards, challenges) under test: a form each as a
user fills it in, sent from the page's "new" form, and what a test needs to tell one
page from the other when the same case runs on both."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of
from treu.challenges.models import Challenge
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.rewards.models import Reward


def png(width: int = 40, height: int = 30, colour: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def reward_form(prog: Programme, **fields: str) -> dict[str, str]:
    data = {
        "programme": prog.slug,
        "code": f.unique("r"),
        "type": "amount_discount",
        "status": "active",
        "name_de": "5-€-Gutschein",
        "name_en": "€5 voucher",
        "points_cost": "500",
        "value": "5,00",
        "refund_on_cancel": "on",
        "restore_on_return": "on",
    }
    data.update(fields)
    return data


def challenge_window() -> tuple[str, str]:
    """A fixed window around now, as the form's datetime-local values (Berlin)."""
    start = (utc_now() - timedelta(days=2)).strftime("%Y-%m-%dT00:00")
    end = (utc_now() + timedelta(days=20)).strftime("%Y-%m-%dT00:00")
    return start, end


def challenge_form(prog: Programme, **fields: str) -> dict[str, str]:
    start, end = challenge_window()
    data = {
        "programme": prog.slug,
        "code": f.unique("c"),
        "name_en": "3 purchases this month",
        "name_de": "3 Einkäufe diesen Monat",
        "trigger": "purchase",
        "goal_type": "count",
        "goal_target": "3",
        "window_type": "fixed",
        "window_every": "month",
        "window_starts_at": start,
        "window_ends_at": end,
        "max_completions": "1",
        "reward_points": "300",
    }
    data.update(fields)
    return data


@dataclass(frozen=True)
class Page:
    """One catalogue page, as the shared tests see it."""

    path: str  # "/admin/rewards"
    form: Callable[..., dict[str, str]]  # (programme, **fields) -> a valid form
    model: type[Reward] | type[Challenge]
    make: Callable[[Database, Programme], Any]  # one saved, not yet changed
    state: Callable[[Database, Any], tuple[Any, ...]]  # what a refused write leaves alone
    writes: tuple[tuple[str, dict[str, str]], ...]  # every POST, "{id}" for the item
    kept: str  # a default field's text that a form shown again still holds

    def __str__(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def create(
        self, web: TestClient, prog: Programme, files: dict[str, Any] | None = None, **fields: str
    ) -> Any:
        """Send the "new" form with ``fields`` over the defaults (no redirect followed)."""
        page = web.get(f"{self.path}/new?programme={prog.slug}")
        assert page.status_code == 200
        return web.post(
            f"{self.path}/new",
            data={"csrf": csrf_of(page.text), **self.form(prog, **fields)},
            files=files,
            follow_redirects=False,
        )

    def saved(self, db: Database, code: str) -> bool:
        with db.unit_of_work(write=False) as session:
            return session.scalar(select(self.model).where(self.model.code == code)) is not None


def _reward_state(db: Database, reward: Reward) -> tuple[Any, ...]:
    row = f.reward_row(db, reward)
    return row.status, row.stock_total, row.points_cost


def _challenge_state(db: Database, challenge: Challenge) -> tuple[Any, ...]:
    with db.unit_of_work(write=False) as session:
        row = session.get_one(Challenge, challenge.id)
        return row.status, row.revision


REWARDS = Page(
    path="/admin/rewards",
    form=reward_form,
    model=Reward,
    make=lambda db, prog: f.reward(db, prog, stock=5),
    state=_reward_state,
    writes=(
        ("/admin/rewards/new", {}),
        ("/admin/rewards/{id}", {}),
        ("/admin/rewards/{id}/stock", {"units": "5"}),
        ("/admin/rewards/{id}/status", {"status": "paused"}),
    ),
    kept="€5 voucher",
)
CHALLENGES = Page(
    path="/admin/challenges",
    form=challenge_form,
    model=Challenge,
    make=lambda db, prog: f.challenge(db, prog, activate=False),
    state=_challenge_state,
    writes=(
        ("/admin/challenges/new", {}),
        ("/admin/challenges/{id}", {}),
        ("/admin/challenges/{id}/activate", {}),
        ("/admin/challenges/{id}/pause", {}),
        ("/admin/challenges/{id}/end", {}),
    ),
    kept="3 Einkäufe diesen Monat",
)
PAGES = (REWARDS, CHALLENGES)
