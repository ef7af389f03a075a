"""Member 360 in the console: what it shows, notes, goodwill adjustments with their
reason, the roles that may do either, and a fixed number of queries per page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape as html_escape

from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from tests.support.queries import statements
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.kit.codes import format_code
from treu.members.models import Member
from treu.tiers.service import tiers


def _balance_shown(html: str) -> int:
    found = re.search(r'data-testid="balance">([^<]+)<', html)
    assert found is not None
    return int(found.group(1).replace(".", "").replace(",", ""))


def _member_with_history(db: Database, purchases: int) -> Member:
    prog = f.programme(db)
    who = f.member(db, prog, first_name="Mia")
    f.ingest(db, *(f.purchase_payload(prog, who, amount_minor=1000 + i) for i in range(purchases)))
    return who


def test_the_page_shows_what_the_api_knows(db: Database) -> None:
    who = _member_with_history(db, 3)
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/members/{who.id}")
    assert page.status_code == 200
    assert _balance_shown(page.text) == f.balance(db, who).available > 0
    assert page.text.count('data-testid="posting"') == 3
    assert who.card_number in page.text
    assert "Mia" in page.text
    # the analyst reads; the forms are not offered
    assert "/adjust" not in page.text
    assert "/notes" not in page.text
    # and refused on the server too
    refused = web.post(
        f"/admin/members/{who.id}/notes", data={"csrf": csrf_of(page.text), "text": "hello"}
    )
    assert refused.status_code == 403


def test_support_writes_notes_and_posts_goodwill_with_a_reason(db: Database) -> None:
    who = _member_with_history(db, 1)
    before = f.balance(db, who).available
    web, email = signed_in(db, "support")
    page = web.get(f"/admin/members/{who.id}")
    token = csrf_of(page.text)
    key = re.search(r'name="key" value="([^"]+)"', page.text)
    assert key is not None

    noted = web.post(
        f"/admin/members/{who.id}/notes",
        data={"csrf": token, "text": "Called about a missing receipt"},
        follow_redirects=True,
    )
    assert noted.status_code == 200
    assert "Called about a missing receipt" in noted.text
    assert email in noted.text

    no_reason = web.post(
        f"/admin/members/{who.id}/adjust",
        data={"csrf": token, "points": "50", "reason": "  ", "key": key.group(1)},
    )
    assert no_reason.status_code == 422
    assert "braucht einen Grund" in no_reason.text
    assert f.balance(db, who).available == before

    form = {"csrf": token, "points": "50", "reason": "Parcel arrived damaged", "key": key.group(1)}
    done = web.post(f"/admin/members/{who.id}/adjust", data=form, follow_redirects=True)
    assert done.status_code == 200
    assert _balance_shown(done.text) == before + 50
    assert "Parcel arrived damaged" in done.text
    # the same form sent again (a reload, a double click) posts once
    web.post(f"/admin/members/{who.id}/adjust", data=form)
    assert f.balance(db, who).available == before + 50
    with db.unit_of_work(write=False) as session:
        logged = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "ledger.adjust", AuditEvent.actor == f"staff:{email}"
            )
        ).all()
    assert len(logged) == 1
    assert logged[0].data["reason"] == "Parcel arrived damaged"


def test_marketing_may_not_post_goodwill(db: Database) -> None:
    who = _member_with_history(db, 1)
    web, _ = signed_in(db, "marketing")
    page = web.get(f"/admin/members/{who.id}")
    refused = web.post(
        f"/admin/members/{who.id}/adjust",
        data={"csrf": csrf_of(page.text), "points": "500", "reason": "x", "key": "k1"},
    )
    assert refused.status_code == 403
    assert f.balance(db, who).available == _balance_shown(page.text)


def test_the_page_costs_the_same_queries_whatever_the_history(db: Database) -> None:
    short = _member_with_history(db, 1)
    long = _member_with_history(db, 40)
    web, _ = signed_in(db, "support")
    web.get(f"/admin/members/{short.id}")  # warm the caches (programme, ladder)
    web.get(f"/admin/members/{long.id}")
    counts = []
    for who in (short, long):
        with statements(db) as seen:
            assert web.get(f"/admin/members/{who.id}").status_code == 200
        counts.append(len([s for s in seen if not s.startswith("BEGIN")]))
    assert counts[0] == counts[1]
    assert counts[0] <= 12


def test_the_page_lists_coupons_redemptions_messages_and_notes(db: Database) -> None:
    prog = f.programme(db)
    who, coupon = f.coupon(db, prog)
    other, _ = f.coupon(db, prog)
    f.delivery(db, who, channel="email", event_type="coupon_issued")
    f.delivery(db, who, channel="webhook", event_type="points.earned")  # not a message
    web, _ = signed_in(db, "support")
    page = web.get(f"/admin/members/{who.id}")
    web.post(
        f"/admin/members/{who.id}/notes",
        data={"csrf": csrf_of(page.text), "text": "Gutschein erklärt"},
    )
    page = web.get(f"/admin/members/{who.id}")
    assert page.status_code == 200
    html = page.text
    assert format_code(coupon.code) in html
    assert html.count("<td>5-€-Gutschein</td>") == 2  # the coupon and its redemption
    assert page.text.count('data-testid="message"') == 1
    assert "coupon_issued" in html
    assert "points.earned" not in html
    assert html.count('data-testid="note"') == 1
    assert "Gutschein erklärt" in html
    assert 'data-testid="deletion-request"' not in html
    # another member's page shows their own coupon, not this one's
    assert format_code(coupon.code) not in web.get(f"/admin/members/{other.id}").text


def test_stored_states_are_shown_in_the_page_language(db: Database) -> None:
    prog = f.programme(db)
    who, _ = f.coupon(db, prog)
    f.delivery(db, who, channel="email", event_type="coupon_issued")
    f.delivery(db, who, channel="inbox", event_type="coupon_issued")
    web, _ = signed_in(db, "support")
    german = web.get(f"/admin/members/{who.id}").text
    for shown in ("<dd>aktiv</dd>", "<td>gültig</td>", "<td>eingelöst</td>", "<td>E-Mail</td>"):
        assert shown in german, shown
    assert german.count("<td>zugestellt</td>") == 2
    assert "<td>Postfach im Portal</td>" in german
    assert "Mitglied seit" in german
    for raw in ("<dd>active</dd>", "<td>redeemed</td>", "<td>delivered</td>", "<td>inbox</td>"):
        assert raw not in german, raw
    web.cookies.set("treu_lang", "en")
    english = web.get(f"/admin/members/{who.id}").text
    for shown in ("<dd>active</dd>", "<td>valid</td>", "<td>redeemed</td>", "<td>e-mail</td>"):
        assert shown in english, shown
    assert "Member since" in english
    with db.unit_of_work() as session:
        session.get_one(Member, who.id).status = "blocked"
    found = web.get("/admin", params={"q": who.card_number}).text
    assert "<td>blocked</td>" in found
    web.cookies.set("treu_lang", "de")
    assert "<td>gesperrt</td>" in web.get("/admin", params={"q": who.card_number}).text


def test_the_tier_history_reads_as_the_api_gives_it(db: Database) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    at = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)
    f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=10_000, occurred_at=at), now=at)
    with db.unit_of_work(write=False) as session:
        entries, _ = tiers.history(session, member_id=who.id, lang="de")
    assert [entry.to_tier for entry, _ in entries] == ["silber"]
    web, _ = signed_in(db, "support")
    page = web.get(f"/admin/members/{who.id}")
    assert page.status_code == 200
    text = entries[0][1]
    assert "Silber" in text
    assert html_escape(text) in page.text
