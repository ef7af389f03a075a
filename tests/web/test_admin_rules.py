"""Earning rules in the console over HTTP: the list, the editor with expression errors in
place, the simulation, publishing and pausing (audited), and who may do what."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.rules.models import Rule, RuleVersion
from treu.rules.service import rules
from treu.rules.spec import RuleSpec

BIG_BASKET: dict[str, Any] = {
    "name": "Big basket bonus",
    "trigger": "purchase",
    "condition": "event.total_minor >= 5000",
    "effect": {"type": "fixed", "points": 100},
}


def english(web: TestClient) -> TestClient:
    web.cookies.set("treu_lang", "en")
    return web


def form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Big basket bonus",
        "trigger": "purchase",
        "condition": "event.total_minor >= 5000",
        "line_condition": "",
        "effect": "fixed",
        "value": "100",
        "scope": "order",
        "stacking": "combinable",
        "priority": "100",
        "budget_points": "",
        "valid_from": "",
        "valid_until": "",
        "limit_per": ["", ""],
        "limit_count": ["", ""],
        "limit_points": ["", ""],
    }
    data.update(changes)
    return data


def draft(db: Database, prog: Programme, spec: dict[str, Any]) -> Rule:
    with db.unit_of_work() as session:
        return rules.create(
            session, programme=prog, spec=RuleSpec.model_validate(spec), actor="test"
        )


def rule_of(db: Database, rule_id: uuid.UUID | str) -> Rule:
    with db.unit_of_work(write=False) as session:
        return rules.get(session, rule_id)


def test_the_list_shows_status_summary_budget_and_validity(db: Database) -> None:
    prog = f.programme(db)
    start = utc_now() + timedelta(days=1)
    f.rule(
        db,
        prog,
        name="Organic double",
        trigger="purchase",
        line_condition="'organic' in line.tags",
        effect={"type": "multiplier", "factor": "2", "scope": "lines"},
        budget_points=50_000,
        valid_from=start.isoformat(),
        limits=[{"per": "day", "max_count": 1}],
    )
    draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, "marketing")
    english(web)
    page = web.get(f"/admin/rules?programme={prog.slug}")
    assert page.status_code == 200
    rows = page.text.split('data-testid="rule-row"')[1:]
    assert len(rows) == 2
    organic = next(r for r in rows if "Organic double" in r)
    assert "Published" in organic
    assert "version 1" in organic
    assert "2 times the points on matching lines" in organic
    assert "&#39;organic&#39; in line.tags" in organic
    assert "0 of 50,000" in organic
    assert "at most 1 times per day" in organic
    basket = next(r for r in rows if "Big basket bonus" in r)
    assert "Draft" in basket
    assert "+100 points per event" in basket
    assert "no budget" in basket
    assert "always" in basket
    assert "/admin/rules/new?programme=" in page.text

    only_drafts = web.get(f"/admin/rules?programme={prog.slug}&status=draft")
    assert only_drafts.text.count('data-testid="rule-row"') == 1
    assert "Big basket bonus" in only_drafts.text
    assert "Organic double" not in only_drafts.text


def test_an_expression_error_is_shown_next_to_its_field_and_the_form_kept(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    english(web)
    editor = web.get(f"/admin/rules/new?programme={prog.slug}")
    assert editor.status_code == 200
    token = csrf_of(editor.text)
    bad = web.post(
        "/admin/rules/new",
        data=form(csrf=token, programme=prog.slug, condition="event.total_minor >= ", value="100"),
    )
    assert bad.status_code == 422
    error = re.search(r'id="condition-error".*?</div>', bad.text, re.S)
    assert error is not None
    assert "line 1, column" in error.group(0)
    assert "^" in error.group(0)  # the caret under the position
    assert 'aria-describedby="condition-error condition-hint"' in bad.text
    assert 'value="Big basket bonus"' in bad.text  # the rest of the form as typed
    assert "event.total_minor &gt;= </textarea>" in bad.text
    with db.unit_of_work(write=False) as session:
        assert rules.all(session, programme_id=prog.id) == []

    # a type error (a number compared with text) and a bad value, each at its field
    worse = web.post(
        "/admin/rules/new",
        data=form(
            csrf=token, programme=prog.slug, line_condition="line.category == 3", value="lots"
        ),
    )
    assert worse.status_code == 422
    assert 'id="line_condition-error"' in worse.text
    assert 'id="value-error"' in worse.text

    saved = web.post(
        "/admin/rules/new", data=form(csrf=token, programme=prog.slug), follow_redirects=False
    )
    assert saved.status_code == 303
    rule_id = saved.headers["location"].split("/")[3].split("?")[0]
    stored = rule_of(db, rule_id)
    assert stored.status == "draft"
    assert stored.draft["condition"] == "event.total_minor >= 5000"
    assert stored.draft["effect"] == {"type": "fixed", "points": 100}
    audit_rows = _audit(db, stored.id)
    assert [(a.action, a.actor.startswith("staff:marketing-")) for a in audit_rows] == [
        ("rule.create", True)
    ]


def test_a_refusal_of_the_whole_rule_is_worded_in_the_page_language(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    token = csrf_of(web.get(f"/admin/rules/new?programme={prog.slug}").text)
    twice = form(
        csrf=token,
        programme=prog.slug,
        limit_per=["day", "day"],
        limit_count=["1", "2"],
        limit_points=["", ""],
    )
    german = web.post("/admin/rules/new", data=twice)
    assert german.status_code == 422
    assert "Höchstens ein Limit je Zeitraum." in german.text
    assert "at most one limit per period" not in german.text
    shown = english(web).post("/admin/rules/new", data=twice)
    assert "At most one limit per period." in shown.text
    with db.unit_of_work(write=False) as session:
        assert rules.all(session, programme_id=prog.id) == []


def test_saving_updates_the_draft_and_refuses_a_stale_revision(db: Database) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    rule = draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, "marketing")
    english(web)
    page = web.get(f"/admin/rules/{rule.id}")
    assert page.status_code == 200
    assert 'value="Big basket bonus"' in page.text
    token = csrf_of(page.text)
    changed = web.post(
        f"/admin/rules/{rule.id}",
        data=form(
            csrf=token,
            revision="1",
            name="Weekend basket",
            valid_from="2027-01-01T00:00",
            limit_per=["week", "lifetime"],
            limit_count=["2", ""],
            limit_points=["", "500"],
            budget_points="10000",
        ),
        follow_redirects=False,
    )
    assert changed.status_code == 303
    stored = rule_of(db, rule.id)
    assert stored.name == "Weekend basket"
    assert stored.draft_revision == 2
    assert stored.draft["valid_from"] == "2027-01-01T00:00:00+01:00"  # Berlin's midnight
    assert stored.draft["limits"] == [
        {"per": "week", "max_count": 2},
        {"per": "lifetime", "max_points": 500},
    ]
    assert stored.draft["budget_points"] == 10000
    again = web.get(f"/admin/rules/{rule.id}")
    assert 'value="2027-01-01T00:00"' in again.text
    stale = web.post(f"/admin/rules/{rule.id}", data=form(csrf=token, revision="1", name="Old"))
    assert stale.status_code == 422
    assert "revision 2" in stale.text
    assert rule_of(db, rule.id).name == "Weekend basket"


def test_the_simulation_shows_what_the_draft_would_have_awarded(db: Database) -> None:
    prog = f.programme(db)
    now = utc_now()
    alice, bob = f.member(db, prog), f.member(db, prog)
    for who, amount, days_ago in ((alice, 8000, 3), (alice, 2000, 2), (bob, 6000, 10)):
        f.ingest_one(
            db,
            f.purchase_payload(
                prog, who, amount_minor=amount, occurred_at=now - timedelta(days=days_ago)
            ),
        )
    rule = draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, "marketing")
    english(web)
    since = (now - timedelta(days=20)).date().isoformat()
    until = now.date().isoformat()
    page = web.get(f"/admin/rules/{rule.id}/simulation?from={since}&to={until}&by=day")
    assert page.status_code == 200
    assert _testid(page.text, "sim-events") == "2"
    assert _testid(page.text, "sim-members") == "2"
    assert _testid(page.text, "sim-points") == "200"
    assert page.text.count('data-testid="chart"') == 1
    assert "Points per day" in page.text
    assert "of 3 events replayed" in page.text
    weekly = web.get(f"/admin/rules/{rule.id}/simulation?from={since}&to={until}")
    assert "Points per week" in weekly.text
    assert _testid(weekly.text, "sim-points") == "200"
    # nothing was written: no postings beyond the base rate, the rule still a draft
    assert f.balance(db, alice).lifetime_earned == 100
    assert rule_of(db, rule.id).status == "draft"

    too_long = web.get(f"/admin/rules/{rule.id}/simulation?from=2024-01-01&to={until}")
    assert too_long.status_code == 422
    assert "366 days" in too_long.text


def test_publish_pause_and_resume_are_audited(db: Database) -> None:
    prog = f.programme(db)
    rule = draft(db, prog, BIG_BASKET)
    web, email = signed_in(db, "marketing")
    english(web)
    token = csrf_of(web.get(f"/admin/rules/{rule.id}").text)
    published = web.post(
        f"/admin/rules/{rule.id}/publish", data={"csrf": token}, follow_redirects=False
    )
    assert (published.status_code, published.headers["location"]) == (
        303,
        f"/admin/rules/{rule.id}?done=published",
    )
    assert rule_of(db, rule.id).status == "active"
    page = web.get(f"/admin/rules/{rule.id}?done=published")
    assert 'data-testid="publish"' not in page.text  # nothing new to publish
    assert 'data-testid="pause"' in page.text
    again = web.post(f"/admin/rules/{rule.id}/publish", data={"csrf": token})
    assert again.status_code == 422
    assert "has not changed" in again.text

    paused = web.post(f"/admin/rules/{rule.id}/pause", data={"csrf": token}, follow_redirects=False)
    assert paused.status_code == 303
    assert rule_of(db, rule.id).status == "paused"
    assert 'data-testid="resume"' in web.get(f"/admin/rules/{rule.id}").text
    resumed = web.post(
        f"/admin/rules/{rule.id}/resume", data={"csrf": token}, follow_redirects=False
    )
    assert resumed.status_code == 303
    stored = rule_of(db, rule.id)
    assert (stored.status, stored.version) == ("active", 1)
    actions = [(a.action, a.actor) for a in _audit(db, rule.id)]
    assert actions[1:] == [
        ("rule.publish", f"staff:{email}"),
        ("rule.pause", f"staff:{email}"),
        ("rule.publish", f"staff:{email}"),
    ]
    with db.unit_of_work(write=False) as session:
        versions = session.scalars(select(RuleVersion).where(RuleVersion.rule_id == rule.id))
        assert [v.published_by for v in versions] == [f"staff:{email}"]


@pytest.mark.parametrize("role", ["support", "analyst"])
def test_support_and_analysts_read_the_list_and_change_nothing(db: Database, role: str) -> None:
    prog = f.programme(db)
    rule = draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, role)
    english(web)
    listed = web.get(f"/admin/rules?programme={prog.slug}")
    assert listed.status_code == 200
    assert "Big basket bonus" in listed.text
    assert "/admin/rules/new" not in listed.text
    assert f'href="/admin/rules/{rule.id}"' not in listed.text
    token = csrf_of(listed.text)  # the sign-out form's: a valid token
    for path in (f"/admin/rules/new?programme={prog.slug}", f"/admin/rules/{rule.id}"):
        assert web.get(path).status_code == 403
    assert web.get(f"/admin/rules/{rule.id}/simulation").status_code == 403
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/admin/rules/new", form(csrf=token, programme=prog.slug)),
        (f"/admin/rules/{rule.id}", form(csrf=token, revision="1", name="Mine now")),
        (f"/admin/rules/{rule.id}/publish", {"csrf": token}),
        (f"/admin/rules/{rule.id}/pause", {"csrf": token}),
        (f"/admin/rules/{rule.id}/resume", {"csrf": token}),
    ]
    for path, data in posts:
        assert web.post(path, data=data).status_code == 403, path
    stored = rule_of(db, rule.id)
    assert (stored.name, stored.status) == ("Big basket bonus", "draft")
    with db.unit_of_work(write=False) as session:
        assert len(rules.all(session, programme_id=prog.id)) == 1


def test_a_post_without_the_forms_token_is_refused(db: Database) -> None:
    prog = f.programme(db)
    rule = draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, "marketing")
    for path, data in (
        ("/admin/rules/new", form(csrf="forged", programme=prog.slug)),
        (f"/admin/rules/{rule.id}", form(csrf="forged", revision="1", name="Forged")),
        (f"/admin/rules/{rule.id}/publish", {"csrf": "forged"}),
        (f"/admin/rules/{rule.id}/pause", {"csrf": "forged"}),
        (f"/admin/rules/{rule.id}/resume", {"csrf": "forged"}),
    ):
        assert web.post(path, data=data).status_code == 403, path
    stored = rule_of(db, rule.id)
    assert (stored.name, stored.status) == ("Big basket bonus", "draft")


def test_strangers_are_sent_to_sign_in(db: Database) -> None:
    from tests.support.admin import client

    web = client(db)
    for path in ("/admin/rules", "/admin/rules/new", f"/admin/rules/{uuid.uuid4()}"):
        answer = web.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/admin/sign-in?next=")


def _testid(html: str, name: str) -> str:
    found = re.search(rf'data-testid="{name}">([^<]*)<', html)
    assert found is not None, name
    return found.group(1)


def _audit(db: Database, rule_id: uuid.UUID) -> list[AuditEvent]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject_id == str(rule_id))
                .order_by(AuditEvent.created_at, AuditEvent.id)
            )
        )


@pytest.mark.parametrize("role", ["admin", "marketing"])
def test_admins_and_marketing_open_every_rules_and_tiers_page(db: Database, role: str) -> None:
    prog = f.tiered(db)
    rule = draft(db, prog, BIG_BASKET)
    web, _ = signed_in(db, role)
    for path in (
        f"/admin/rules?programme={prog.slug}",
        f"/admin/rules/new?programme={prog.slug}",
        f"/admin/rules/{rule.id}",
        f"/admin/rules/{rule.id}/simulation",
        f"/admin/tiers?programme={prog.slug}",
        f"/admin/tiers/{prog.slug}/new",
        f"/admin/tiers/{prog.slug}/gold",
    ):
        answer = web.get(path)
        assert answer.status_code == 200, path
        assert 'href="/admin/rules"' in answer.text  # the menu offers both pages
        assert 'href="/admin/tiers"' in answer.text
