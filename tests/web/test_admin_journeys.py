"""Journeys in the console over HTTP: the eight kinds with their settings and counts,
switching one on and off, changing its settings (errors in place), and the roles that
may not."""

from __future__ import annotations

import re

import pytest

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from treu.db.session import Database
from treu.journeys.models import Journey, JourneyKind
from treu.journeys.service import Target, journeys
from treu.programmes.models import Programme


def _journey(db: Database, prog: Programme, kind: JourneyKind) -> Journey | None:
    with db.unit_of_work(write=False) as session:
        found = journeys.get(session, prog.id, kind)
        if found is not None:
            session.expunge(found)
        return found


def test_the_page_lists_every_kind_with_its_counts(db: Database) -> None:
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(3)]
    with db.unit_of_work() as session:
        birthday = journeys.put(session, prog, JourneyKind.birthday, enabled=True)
        journeys.fire(session, birthday, prog, [Target(m.id, occasion="2026") for m in people])
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/journeys?programme={prog.slug}")
    assert page.status_code == 200
    for kind in JourneyKind:
        assert f'data-testid="journey-row-{kind.value}"' in page.text
    row = re.search(r'data-testid="journey-row-birthday">(.*?)</tr>', page.text, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">([^<]+)</td>', row.group(1))
    assert cells == ["0 %", "3", "3"]  # no control group: all three entered and messaged
    assert re.search(r'journey-status-birthday">an<', page.text)
    assert re.search(r'journey-status-welcome">aus<', page.text)
    # read-only: no forms
    assert "/switch" not in page.text


def test_marketing_switches_a_journey_on_and_off_and_changes_its_settings(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    page = web.get(f"/admin/journeys?programme={prog.slug}")
    token = csrf_of(page.text)
    url = f"/admin/journeys/birthday?programme={prog.slug}"

    on = web.post(
        f"/admin/journeys/birthday/switch?programme={prog.slug}",
        data={"csrf": token, "enabled": "on"},
        follow_redirects=False,
    )
    assert on.status_code == 303
    found = _journey(db, prog, JourneyKind.birthday)
    assert found is not None
    assert found.enabled
    assert found.params == {"days_before": 0}

    saved = web.post(
        url,
        data={
            "csrf": token,
            "enabled": "on",
            "template": "birthday",
            "days_before": "3",
            "holdout_pct": "10",
            "reward_id": "",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    found = _journey(db, prog, JourneyKind.birthday)
    assert found is not None
    assert (found.enabled, found.params, found.holdout_pct) == (True, {"days_before": 3}, 10)

    # the switch keeps the settings
    off = web.post(
        f"/admin/journeys/birthday/switch?programme={prog.slug}",
        data={"csrf": token},
        follow_redirects=False,
    )
    assert off.status_code == 303
    found = _journey(db, prog, JourneyKind.birthday)
    assert found is not None
    assert (found.enabled, found.params, found.holdout_pct) == (False, {"days_before": 3}, 10)

    shown = web.get(f"/admin/journeys?programme={prog.slug}")
    assert re.search(r'journey-status-birthday">aus<', shown.text)
    assert 'value="3"' in shown.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("days_before", "soon"), ("holdout_pct", "150"), ("days_before", "-1")],
)
def test_bad_settings_are_refused_in_place(db: Database, field: str, value: str) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    token = csrf_of(web.get(f"/admin/journeys?programme={prog.slug}").text)
    data = {"csrf": token, "enabled": "on", "template": "birthday", "days_before": "3"}
    data[field] = value
    refused = web.post(f"/admin/journeys/birthday?programme={prog.slug}", data=data)
    assert refused.status_code == 422
    assert 'data-testid="journey-error"' in refused.text
    assert _journey(db, prog, JourneyKind.birthday) is None


def test_an_unknown_template_is_refused(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    token = csrf_of(web.get(f"/admin/journeys?programme={prog.slug}").text)
    refused = web.post(
        f"/admin/journeys/welcome?programme={prog.slug}",
        data={"csrf": token, "enabled": "on", "template": "nope"},
    )
    assert refused.status_code == 422
    assert _journey(db, prog, JourneyKind.welcome) is None


@pytest.mark.parametrize("role", ["support", "analyst"])
def test_read_only_roles_are_refused_every_write(db: Database, role: str) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, role)
    page = web.get(f"/admin/journeys?programme={prog.slug}")
    assert page.status_code == 200
    token = csrf_of(page.text)
    switch = web.post(
        f"/admin/journeys/birthday/switch?programme={prog.slug}",
        data={"csrf": token, "enabled": "on"},
    )
    assert switch.status_code == 403
    save = web.post(
        f"/admin/journeys/birthday?programme={prog.slug}",
        data={"csrf": token, "enabled": "on", "days_before": "1"},
    )
    assert save.status_code == 403
    assert _journey(db, prog, JourneyKind.birthday) is None


def test_a_post_without_the_form_token_is_refused(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    for url, data in (
        (f"/admin/journeys/birthday/switch?programme={prog.slug}", {"enabled": "on"}),
        (f"/admin/journeys/birthday?programme={prog.slug}", {"csrf": "x", "enabled": "on"}),
    ):
        assert web.post(url, data=data).status_code == 403
    assert _journey(db, prog, JourneyKind.birthday) is None
