"""The portal's privacy page over HTTP on both databases: the data download (a JSON
attachment of the member's own data), the deletion request with its confirmation
(recorded once, audit-logged, pending on the page and on the console's member 360),
CSRF."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import make_api
from tests.support import admin
from tests.support.portal import csrf_of, signed_in
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.members.models import Member
from treu.privacy.models import DeletionRequest

PRIVACY = "/portal/privacy"


def _portal(db: Database, who: Member) -> TestClient:
    web = signed_in(make_api(db).client, db, who)
    web.follow_redirects = False
    return web


def _requests(db: Database, who: Member) -> list[DeletionRequest]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(DeletionRequest).where(DeletionRequest.member_id == who.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_the_download_is_a_json_file_of_the_members_own_data(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, first_name="Mia")
    other = f.member(db, prog, first_name="Ole")
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=2500))
    f.ingest(db, f.purchase_payload(prog, other, amount_minor=9900))
    web = _portal(db, who)

    page = web.get(PRIVACY)
    assert page.status_code == 200
    assert 'href="/portal/privacy/export"' in page.text

    answer = web.get(f"{PRIVACY}/export")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="treu-my-data-')
    assert disposition.endswith('.json"')
    data = json.loads(answer.content)
    assert data["member"]["id"] == str(who.id)
    assert data["member"]["first_name"] == "Mia"
    assert [p["points"] for p in data["records"]["postings"]] == [25]
    assert str(other.id) not in answer.text
    assert "Ole" not in answer.text
    # the session's secrets are not in the file
    assert csrf_of(page.text) not in answer.text
    # nor a sign-in code's hash (a code was asked for)
    from treu.members.codes import codes

    with db.unit_of_work() as session:
        assert codes.request(session, programme_id=prog.id, email=who.email or "", key=b"k" * 32)
    again = json.loads(web.get(f"{PRIVACY}/export").content)
    assert again["records"].get("sign_in_codes"), sorted(again["records"])
    assert all("code_hash" not in row for row in again["records"]["sign_in_codes"])


def test_deletion_needs_the_box_and_the_word_and_is_recorded_once(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _portal(db, who)
    page = web.get(PRIVACY)
    token = csrf_of(page.text)
    assert "Löschung beantragen" in page.text
    assert "noch nicht selbst" in page.text  # the page says erasure is done by staff

    for form in (
        {"confirm": "LÖSCHEN"},  # no tick
        {"understood": "yes", "confirm": "bitte"},  # not the word
        {"understood": "yes"},
    ):
        refused = web.post(f"{PRIVACY}/delete", data={"csrf": token, **form})
        assert refused.status_code == 422
        assert 'id="delete-error"' in refused.text
    assert _requests(db, who) == []

    done = web.post(
        f"{PRIVACY}/delete", data={"csrf": token, "understood": "yes", "confirm": "löschen"}
    )
    assert done.status_code == 303
    page = web.get(done.headers["location"])
    assert 'data-testid="deletion-pending"' in page.text
    assert "Wir haben Ihren Antrag erhalten." in page.text
    assert "/portal/privacy/delete" not in page.text  # no second form

    again = web.post(
        f"{PRIVACY}/delete", data={"csrf": token, "understood": "yes", "confirm": "DELETE"}
    )
    assert again.status_code == 303
    requests = _requests(db, who)
    assert [(r.status, r.source) for r in requests] == [("open", "portal")]
    with db.unit_of_work(write=False) as session:
        logged = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "member.deletion_requested",
                AuditEvent.subject_id == str(who.id),
            )
        ).all()
    assert len(logged) == 1
    assert logged[0].actor == f"member:{who.id}"
    assert logged[0].data == {"request_id": str(requests[0].id), "source": "portal"}


def test_staff_see_the_open_request_on_the_members_page(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    asked = f.member(db, prog)
    web = _portal(db, asked)
    token = csrf_of(web.get(PRIVACY).text)
    web.post(f"{PRIVACY}/delete", data={"csrf": token, "understood": "yes", "confirm": "DELETE"})

    console, _ = admin.signed_in(db, "support")
    shown = console.get(f"/admin/members/{asked.id}")
    assert shown.status_code == 200
    assert 'data-testid="deletion-request"' in shown.text
    assert "Löschung beantragt" in shown.text
    assert 'data-testid="deletion-request"' not in console.get(f"/admin/members/{who.id}").text


def test_forms_without_the_sessions_token_are_refused(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _portal(db, who)
    web.get(PRIVACY)
    refused = web.post(
        f"{PRIVACY}/delete", data={"csrf": "forged", "understood": "yes", "confirm": "DELETE"}
    )
    assert refused.status_code == 403
    assert _requests(db, who) == []


def test_signed_out_visitors_get_no_data(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = make_api(db).client
    web.follow_redirects = False
    for path in (PRIVACY, f"{PRIVACY}/export"):
        answer = web.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/portal/sign-in")
    assert who.email is not None
    assert who.email not in web.get(f"{PRIVACY}/export").text
