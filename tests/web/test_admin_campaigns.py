"""Campaigns in the console over HTTP: a marketing user creates, changes, activates,
pauses and ends a campaign through the forms; errors are shown at their field; a
campaign's page and the dashboard show its results with the uplift over the control
group; support and analyst read and are refused every write, also without the form."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from treu.audit.models import AuditEvent
from treu.campaigns.models import Campaign
from treu.campaigns.service import campaigns
from treu.campaigns.stats import campaign_stats
from treu.db.session import Database
from treu.insights.dashboard import campaign_results, uplift
from treu.kit.time import utc_now
from treu.programmes.models import Programme

POINTS_BOOST: dict[str, Any] = {"name": "Plus 50", "boost": {"type": "points", "points": 50}}


def _local(delta: timedelta) -> str:
    """A datetime-local value in Berlin (the test programmes' zone) ``delta`` from now."""
    from zoneinfo import ZoneInfo

    return (utc_now() + delta).astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M")


def _form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "bonus",
        "code": f.unique("bio"),
        "name": "Bio-Woche",
        "description": "",
        "starts_at": _local(-timedelta(hours=1)),
        "ends_at": _local(timedelta(days=7)),
        "boost_type": "multiplier",
        "factor": "3",
        "boost_points": "",
        "condition": "",
        "line_condition": "'organic' in line.tags",
        "holdout_percent": "10",
        "budget_points": "5000",
    }
    data.update(changes)
    return data


def _campaign(db: Database, code: str) -> Campaign:
    with db.unit_of_work(write=False) as session:
        found = session.scalars(select(Campaign).where(Campaign.code == code)).one()
        session.expunge(found)
        return found


def test_marketing_creates_activates_pauses_and_ends_a_campaign(db: Database) -> None:
    prog = f.programme(db)
    web, email = signed_in(db, "marketing")
    listing = web.get(f"/admin/campaigns?programme={prog.slug}")
    assert listing.status_code == 200
    assert "No campaigns yet." in listing.text or "Noch keine Kampagnen." in listing.text
    form = web.get(f"/admin/campaigns/new?programme={prog.slug}")
    assert form.status_code == 200
    data = _form(csrf=csrf_of(form.text), tiers=[])
    created = web.post(
        f"/admin/campaigns/new?programme={prog.slug}", data=data, follow_redirects=False
    )
    assert created.status_code == 303, created.text
    found = _campaign(db, data["code"])
    assert created.headers["location"] == f"/admin/campaigns/{found.id}?done=created"
    assert found.status == "draft"
    spec = campaigns.spec_of(found)
    assert spec.boost is not None
    assert spec.boost.type == "multiplier"
    assert spec.boost.factor == Decimal(3)
    assert spec.boost.line_condition == "'organic' in line.tags"
    assert spec.budget_points == 5000
    assert spec.holdout_percent == 10
    # the local time is the programme's: an hour ago, to the minute
    assert abs((spec.window.starts_at - (utc_now() - timedelta(hours=1))).total_seconds()) < 120

    listing = web.get(f"/admin/campaigns?programme={prog.slug}")
    assert listing.text.count('data-testid="campaign-row"') == 1
    assert data["code"] in listing.text

    page = web.get(f"/admin/campaigns/{found.id}")
    token = csrf_of(page.text)
    assert (
        web.post(f"/admin/campaigns/{found.id}/activate", data={"csrf": token}).status_code == 200
    )
    assert _campaign(db, data["code"]).status == "active"

    # an edit of an active campaign: a larger budget is fine ...
    edit = web.get(f"/admin/campaigns/{found.id}/edit")
    assert f'value="{data["code"]}"' in edit.text
    saved = web.post(
        f"/admin/campaigns/{found.id}/edit",
        data={**data, "budget_points": "9000", "csrf": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert campaigns.spec_of(_campaign(db, data["code"])).budget_points == 9000
    # ... a new control group is not: the service's refusal, in place
    locked = web.post(
        f"/admin/campaigns/{found.id}/edit", data={**data, "holdout_percent": "20", "csrf": token}
    )
    assert locked.status_code == 422
    assert "holdout_percent cannot change" in locked.text
    assert campaigns.spec_of(_campaign(db, data["code"])).holdout_percent == 10

    assert web.post(f"/admin/campaigns/{found.id}/pause", data={"csrf": token}).status_code == 200
    assert _campaign(db, data["code"]).status == "paused"
    assert web.post(f"/admin/campaigns/{found.id}/end", data={"csrf": token}).status_code == 200
    assert _campaign(db, data["code"]).status == "ended"
    # an ended campaign cannot start again: said on the page, nothing changes
    again = web.post(f"/admin/campaigns/{found.id}/activate", data={"csrf": token})
    assert again.status_code == 422
    assert "cannot be activated again" in again.text
    assert _campaign(db, data["code"]).status == "ended"

    with db.unit_of_work(write=False) as session:
        actions = set(
            session.scalars(select(AuditEvent.action).where(AuditEvent.subject_id == str(found.id)))
        )
        actors = set(
            session.scalars(select(AuditEvent.actor).where(AuditEvent.subject_id == str(found.id)))
        )
    assert {"campaign.create", "campaign.activate", "campaign.pause", "campaign.end"} <= actions
    assert actors == {f"staff:{email}"}


def test_errors_are_shown_at_their_field(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    form = web.get(f"/admin/campaigns/new?programme={prog.slug}")
    token = csrf_of(form.text)
    url = f"/admin/campaigns/new?programme={prog.slug}"

    bad = web.post(url, data=_form(csrf=token, condition="event.weekday in [6, 7"))
    assert bad.status_code == 422
    shown = re.search(r'data-testid="error-condition">([^<]+)<', bad.text)
    assert shown is not None
    assert "line 1, column" in shown.group(1)
    assert 'aria-invalid="true"' in bad.text
    assert "event.weekday in [6, 7" in bad.text  # what was typed stays

    backwards = web.post(url, data=_form(csrf=token, ends_at=_local(-timedelta(days=2))))
    assert backwards.status_code == 422
    assert 'data-testid="error-ends_at"' in backwards.text

    many = web.post(
        url, data=_form(csrf=token, holdout_percent="95", factor="0.5", code="Bad Code")
    )
    assert many.status_code == 422
    for field in ("holdout_percent", "factor", "code"):
        assert f'data-testid="error-{field}"' in many.text

    unknown_tier = web.post(url, data=_form(csrf=token, tiers=["platin"]))
    assert unknown_tier.status_code == 422
    assert "unknown tier" in unknown_tier.text

    code = f.unique("dup")
    assert (
        web.post(url, data=_form(csrf=token, code=code), follow_redirects=False).status_code == 303
    )
    taken = web.post(url, data=_form(csrf=token, code=code))
    assert taken.status_code == 422
    assert 'data-testid="error-code"' in taken.text

    with db.unit_of_work(write=False) as session:
        assert [c.code for c in campaigns.all(session, programme_id=prog.id)] == [code]


def test_an_offer_is_given_when_activated_from_the_console(db: Database) -> None:
    prog = f.programme(db)
    members = [f.member(db, prog) for _ in range(3)]
    web, _ = signed_in(db, "marketing")
    form = web.get(f"/admin/campaigns/new?programme={prog.slug}")
    token = csrf_of(form.text)
    data = _form(
        csrf=token,
        kind="offer",
        offer_points="200",
        offer_template="offer",
        holdout_percent="0",
        budget_points="",
        line_condition="",
    )
    created = web.post(
        f"/admin/campaigns/new?programme={prog.slug}", data=data, follow_redirects=False
    )
    assert created.status_code == 303, created.text
    found = _campaign(db, data["code"])
    assert (
        web.post(f"/admin/campaigns/{found.id}/activate", data={"csrf": token}).status_code == 200
    )
    assert [f.balance(db, m).available for m in members] == [200, 200, 200]
    page = web.get(f"/admin/campaigns/{found.id}")
    assert re.search(r'data-testid="points-given">600<', page.text)


def _run(db: Database, prog: Programme) -> Campaign:
    """A +50 points campaign with 2 treated members buying twice and 1 held-out member
    buying once."""
    found = f.campaign(db, prog, holdout_percent=50, **POINTS_BOOST)
    treated, held_out = f.members_in_arms(db, prog, found, treated=2, held_out=1)
    payloads = [f.purchase_payload(prog, m, amount_minor=3000) for m in treated for _ in (1, 2)]
    payloads.append(f.purchase_payload(prog, held_out[0], amount_minor=2000))
    f.ingest(db, *payloads)
    return found


def test_the_campaign_page_shows_its_results(db: Database) -> None:
    prog = f.programme(db)
    found = _run(db, prog)
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/campaigns/{found.id}")
    assert page.status_code == 200
    assert re.search(r'data-testid="reached">3<', page.text)
    assert re.search(r'data-testid="points-given">200<', page.text)  # 4 purchases x 50
    assert re.search(r'data-testid="messages-sent">0<', page.text)
    # revenue per member: 60 EUR treated, 20 EUR held out: +40 EUR, +200 %
    assert re.search(r'data-testid="uplift">40,00\s€<', page.text)
    assert "200 %" in page.text
    assert 'data-testid="chart"' in page.text
    arm = re.search(r'data-testid="arm-treated">(.*?)</tr>', page.text)
    assert arm is not None
    assert ">2<" in arm.group(1)
    assert ">4<" in arm.group(1)
    # the analyst reads: no form that changes anything
    assert "/activate" not in page.text
    assert "/edit" not in page.text


def test_the_dashboard_shows_campaign_results(db: Database) -> None:
    prog = f.programme(db)
    found = _run(db, prog)
    f.campaign(db, prog, activate=False, **POINTS_BOOST)  # a draft is not a result
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/dashboard?programme={prog.slug}")
    assert page.status_code == 200
    assert page.text.count('data-testid="campaign-result"') == 1
    row = re.search(r'data-testid="campaign-result">(.*?)</tr>', page.text)
    assert row is not None
    assert found.code in row.group(1)
    assert ">200<" in row.group(1)
    assert "40,00" in row.group(1)
    assert page.text.count('data-testid="chart"') == 3  # two weekly charts and the campaigns'

    # a range before the campaign's window shows none
    long_ago = (utc_now() - timedelta(days=60)).date()
    earlier = web.get(
        f"/admin/dashboard?programme={prog.slug}&from={long_ago - timedelta(days=7)}&to={long_ago}"
    )
    assert 'data-testid="campaign-result"' not in earlier.text
    assert earlier.text.count('data-testid="chart"') == 2


def test_uplift_compares_the_arms_per_member(db: Database) -> None:
    prog = f.programme(db)
    found = _run(db, prog)
    now = utc_now()
    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=now)
        results = campaign_results(
            session, prog, start=now.date() - timedelta(days=3), end=now.date(), now=now
        )
    lift = uplift(stats)
    assert lift.purchases == Decimal("1.00")  # 2 per member against 1
    assert lift.revenue_minor == 4000
    assert lift.revenue_percent == Decimal("200.0")
    assert [(r.code, r.treated, r.held_out, r.points) for r in results] == [(found.code, 2, 1, 200)]
    without = f.campaign(db, prog, holdout_percent=0, **POINTS_BOOST)
    with db.unit_of_work(write=False) as session:
        none = uplift(campaign_stats(session, campaigns.get(session, without.id), now=now))
    assert none.revenue_minor is None
    assert none.revenue_percent is None


@pytest.mark.parametrize("role", ["support", "analyst"])
def test_read_only_roles_read_and_are_refused_every_write(db: Database, role: str) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, activate=False)
    web, _ = signed_in(db, role)
    listing = web.get(f"/admin/campaigns?programme={prog.slug}")
    assert listing.status_code == 200
    assert found.code in listing.text
    assert "/admin/campaigns/new" not in listing.text
    page = web.get(f"/admin/campaigns/{found.id}")
    assert page.status_code == 200
    token = csrf_of(page.text)  # the sign-out form's: a valid token
    assert web.get(f"/admin/campaigns/new?programme={prog.slug}").status_code == 403
    assert web.get(f"/admin/campaigns/{found.id}/edit").status_code == 403
    for url, data in (
        (f"/admin/campaigns/new?programme={prog.slug}", _form(csrf=token)),
        (f"/admin/campaigns/{found.id}/edit", _form(csrf=token, code=found.code)),
        (f"/admin/campaigns/{found.id}/activate", {"csrf": token}),
        (f"/admin/campaigns/{found.id}/pause", {"csrf": token}),
        (f"/admin/campaigns/{found.id}/end", {"csrf": token}),
    ):
        assert web.post(url, data=data).status_code == 403, url
    assert _campaign(db, found.code).status == "draft"
    with db.unit_of_work(write=False) as session:
        assert len(campaigns.all(session, programme_id=prog.id)) == 1


def test_a_post_without_the_form_token_is_refused(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, activate=False)
    web, _ = signed_in(db, "marketing")
    for url, data in (
        (f"/admin/campaigns/new?programme={prog.slug}", _form(csrf="forged")),
        (f"/admin/campaigns/{found.id}/activate", {"csrf": "forged"}),
        (f"/admin/campaigns/{found.id}/edit", _form(code=found.code)),
    ):
        assert web.post(url, data=data).status_code == 403, url
    assert _campaign(db, found.code).status == "draft"
    with db.unit_of_work(write=False) as session:
        assert len(campaigns.all(session, programme_id=prog.id)) == 1
