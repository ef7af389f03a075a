"""Challenges in the console over HTTP, on both databases: the list with participants
and completions, creating and editing with every field, an expression's error at its
field with line and column (as the API reports it), what an activated challenge still
lets change, activate/pause/end, and who may do what — refused on the server."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from tests.support.catalogue import CHALLENGES, challenge_form
from treu.challenges.models import Challenge
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme


def _challenge(db: Database, prog: Programme, code: str) -> Challenge:
    with db.unit_of_work(write=False) as session:
        found = session.scalar(
            select(Challenge).where(Challenge.programme_id == prog.id, Challenge.code == code)
        )
        assert found is not None
        return found


def test_marketing_creates_a_challenge_with_every_field(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    done = CHALLENGES.create(
        web,
        prog,
        code=code,
        description_en="Shop from three categories",
        description_de="Kaufe aus drei Kategorien",
        condition="event.total_minor >= 1000",
        line_condition="line.category != 'pfand'",
        goal_type="distinct",
        goal_value="line.category",
        window_type="repeating",
        window_every="week",
        max_completions="4",
        badge_code="explorer",
        badge_name_en="Explorer",
        badge_name_de="Entdecker",
        badge_icon="🧭",
        badge_description_en="Three categories in a week",
    )
    assert done.status_code == 303, done.text
    saved = _challenge(db, prog, code)
    assert done.headers["location"] == f"/admin/challenges/{saved.id}?done=created"
    spec = saved.spec
    assert saved.status == "draft"
    assert spec["name"] == {"en": "3 purchases this month", "de": "3 Einkäufe diesen Monat"}
    assert spec["description"]["de"] == "Kaufe aus drei Kategorien"
    assert spec["trigger"] == ["purchase"]
    assert spec["condition"] == "event.total_minor >= 1000"
    assert spec["line_condition"] == "line.category != 'pfand'"
    assert spec["goal"] == {"type": "distinct", "target": 3, "value": "line.category"}
    assert spec["window"]["type"] == "repeating"
    assert spec["window"]["every"] == "week"
    assert spec["max_completions"] == 4
    assert spec["reward"]["points"] == 300
    assert spec["reward"]["badge"]["name"] == {"en": "Explorer", "de": "Entdecker"}
    assert spec["reward"]["badge"]["icon"] == "🧭"
    page = web.get(done.headers["location"])
    assert "als Entwurf gespeichert" in page.text


def test_an_expression_error_is_shown_at_its_field_with_line_and_column(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    answer = CHALLENGES.create(
        web, prog, code=code, goal_type="distinct", goal_value="line.categry"
    )
    assert answer.status_code == 422
    shown = re.search(r'id="e-goal_value"[^>]*>([^<]*)<', answer.text)
    assert shown is not None, answer.text
    assert "line.category" in shown.group(1)  # "did you mean"
    assert "line 1, column" in shown.group(1)
    assert 'value="line.categry"' in answer.text or ">line.categry<" in answer.text
    bad_condition = CHALLENGES.create(web, prog, code=code, condition="event.total_minor >=")
    assert bad_condition.status_code == 422
    assert re.search(r'id="e-condition"[^>]*>[^<]*line 1, column', bad_condition.text)
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Challenge).where(Challenge.code == code)) is None


def test_the_specifications_refusals_are_worded_in_the_page_language(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    empty = CHALLENGES.create(web, prog, code=code, reward_points="0")
    assert empty.status_code == 422
    assert "Vergeben Sie Punkte, ein Abzeichen oder beides." in empty.text
    assert "a reward needs points or a badge" not in empty.text
    lines = CHALLENGES.create(
        web, prog, code=code, trigger="review_submitted", line_condition="line.quantity > 1"
    )
    assert lines.status_code == 422
    assert "brauchen allein den Auslöser" in lines.text
    web.cookies.set("treu_lang", "en")
    again = CHALLENGES.create(web, prog, code=code, reward_points="0")
    assert "Give points, a badge or both." in again.text
    assert not CHALLENGES.saved(db, code)


def test_list_with_participants_completions_and_badge(db: Database) -> None:
    prog = f.programme(db)
    start = utc_now() - timedelta(days=1)
    window = {
        "type": "fixed",
        "starts_at": start.isoformat(),
        "ends_at": (utc_now() + timedelta(days=10)).isoformat(),
    }
    badge = {"code": "duo", "name": {"en": "Duo", "de": "Duo"}, "icon": "🏅"}
    target = f.challenge(
        db, prog, window=window, goal={"type": "count", "target": 2},
        reward={"points": 50, "badge": badge}, now=start,
    )  # fmt: skip
    f.challenge(db, prog, activate=False, window=window)
    done, halfway, idle = (f.member(db, prog) for _ in range(3))
    f.ingest(db, *(f.purchase_payload(prog, done, amount_minor=1500) for _ in range(2)))
    f.ingest(db, f.purchase_payload(prog, halfway, amount_minor=1500))
    del idle
    web, _email = signed_in(db, "analyst")
    page = web.get(f"/admin/challenges?programme={prog.slug}")
    assert page.status_code == 200
    rows = page.text.split('data-testid="challenge-row"')[1:]
    assert len(rows) == 2
    first = rows[0]
    assert f"/admin/challenges/{target.id}" in first
    assert re.search(r'data-testid="participants">2<', first)
    assert re.search(r'data-testid="completions">1<', first)
    assert "Abzeichen: Duo" in first
    assert "aktiv" in first
    assert "Entwurf" in rows[1]
    assert re.search(r'data-testid="participants">0<', rows[1])
    # read-only
    assert "/activate" not in page.text
    assert "/admin/challenges/new" not in page.text


def test_activate_pause_end_as_the_service_allows(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    CHALLENGES.create(web, prog, code=code)
    draft = _challenge(db, prog, code)
    token = csrf_of(web.get(f"/admin/challenges?programme={prog.slug}").text)

    def act(action: str) -> Any:
        return web.post(
            f"/admin/challenges/{draft.id}/{action}", data={"csrf": token}, follow_redirects=True
        )

    assert act("pause").status_code == 422  # a draft cannot be paused
    activated = act("activate")
    assert activated.status_code == 200
    assert "zählt ab jetzt" in activated.text
    assert _challenge(db, prog, code).status == "active"
    assert act("pause").status_code == 200
    assert _challenge(db, prog, code).status == "paused"
    assert act("activate").status_code == 200
    assert act("end").status_code == 200
    assert _challenge(db, prog, code).status == "ended"
    again = act("activate")
    assert again.status_code == 422
    assert "ended challenge" in again.text
    assert act("explode").status_code == 404


def test_an_activated_challenge_changes_only_names_and_reward(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    CHALLENGES.create(web, prog, code=code)
    made = _challenge(db, prog, code)
    token = csrf_of(web.get(f"/admin/challenges/{made.id}").text)
    web.post(f"/admin/challenges/{made.id}/activate", data={"csrf": token})
    page = web.get(f"/admin/challenges/{made.id}")
    assert "stehen fest" in page.text
    assert 'name="goal_target"' not in page.text  # frozen: not offered
    changed = web.post(
        f"/admin/challenges/{made.id}",
        data={
            "csrf": token,
            **challenge_form(prog, code=code, name_en="Three purchases", reward_points="500"),
            "goal_target": "99",  # sent anyway: ignored, as the form does not offer it
        },
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    spec = _challenge(db, prog, code).spec
    assert spec["name"]["en"] == "Three purchases"
    assert spec["reward"]["points"] == 500
    assert spec["goal"]["target"] == 3

    # A mistake in what may change: the form again, with what was typed and the rest as
    # stored (the form of an active challenge sends only names and reward).
    locked_form = {
        "csrf": token,
        "name_en": "Four purchases",
        "name_de": "Vier Einkäufe",
        "reward_points": "abc",
    }
    wrong = web.post(f"/admin/challenges/{made.id}", data=locked_form)
    assert wrong.status_code == 422, wrong.text
    assert 'value="Four purchases"' in wrong.text
    assert "Bitte eine ganze Zahl eingeben." in wrong.text
    assert _challenge(db, prog, code).spec["name"]["en"] == "Three purchases"


def test_a_draft_can_change_everything(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("c")
    CHALLENGES.create(web, prog, code=code)
    made = _challenge(db, prog, code)
    token = csrf_of(web.get(f"/admin/challenges/{made.id}").text)
    changed = web.post(
        f"/admin/challenges/{made.id}",
        data={"csrf": token, **challenge_form(prog, code=code, goal_target="5")},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert _challenge(db, prog, code).spec["goal"]["target"] == 5
    wrong = web.post(
        f"/admin/challenges/{made.id}",
        data={"csrf": token, **challenge_form(prog, code=code, condition="member.nope == 1")},
    )
    assert wrong.status_code == 422
    assert 'id="e-condition"' in wrong.text


def test_english(db: Database) -> None:
    prog = f.programme(db)
    f.challenge(db, prog, activate=False)
    web, _email = signed_in(db, "marketing")
    web.cookies.set("treu_lang", "en")
    page = web.get(f"/admin/challenges?programme={prog.slug}")
    assert "Participants" in page.text
    assert "draft" in page.text
    assert "Events that count" in web.get(f"/admin/challenges/new?programme={prog.slug}").text
