"""Message templates in the console over HTTP: the list per language, the German and
English previews side by side rendered by the delivery's renderer with a demo member's
data, saving (a stored template, then a new version), a preview that saves nothing,
syntax errors in place, HTML that cannot run script in the console, and the roles."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from treu.db.session import Database
from treu.messaging.errors import TemplateProblem
from treu.messaging.models import MessageTemplate
from treu.messaging.stored import preview_message
from treu.messaging.templates import TemplateSource
from treu.programmes.models import Programme


def _stored(db: Database, prog: Programme) -> list[MessageTemplate]:
    with db.unit_of_work(write=False) as session:
        rows = list(
            session.scalars(select(MessageTemplate).where(MessageTemplate.programme_id == prog.id))
        )
        for row in rows:
            session.expunge(row)
        return rows


def _srcdoc(page: str, lang: str) -> str:
    found = re.search(
        r'<iframe class="mail" sandbox srcdoc="([^"]*)"[^>]*preview-html-' + lang, page
    )
    assert found is not None, "no sandboxed preview frame"
    return html.unescape(found.group(1))


def _frame(web: TestClient, prog: Programme, lang: str) -> str:
    """The preview frame's document, checked for the policy that keeps it harmless."""
    answer = web.get(f"/admin/templates/welcome/{lang}/frame?programme={prog.slug}")
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "sandbox" in policy
    assert "script-src" not in policy
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    return answer.text


def test_previews_in_german_and_english_with_a_demo_members_data(db: Database) -> None:
    prog = f.programme(db, name="Treu Markt")
    f.member(db, prog, first_name="Lena")
    web, _ = signed_in(db, "analyst")
    listing = web.get(f"/admin/templates?programme={prog.slug}")
    assert listing.status_code == 200
    assert listing.text.count('data-testid="template-row"') >= 9
    page = web.get(f"/admin/templates/welcome?programme={prog.slug}")
    assert page.status_code == 200
    for lang in ("de", "en"):
        frame = f"/admin/templates/welcome/{lang}/frame?programme={prog.slug}"
        assert f'<iframe class="mail" sandbox src="{frame}"' in page.text
    de, en = _frame(web, prog, "de"), _frame(web, prog, "en")
    assert "Lena" in de
    assert "Lena" in en
    assert "Treu Markt" in de
    assert de != en
    assert 'data-testid="side-de"' in page.text
    assert 'data-testid="side-en"' in page.text
    # the analyst reads: no form to change the wording
    assert f"/admin/templates/welcome/de?programme={prog.slug}" not in page.text
    assert 'name="action"' not in page.text
    assert web.get("/admin/templates/no-such-message").status_code == 404


def test_marketing_edits_a_template_and_sees_it_previewed(db: Database) -> None:
    prog = f.programme(db)
    f.member(db, prog, first_name="Lena")
    web, email = signed_in(db, "marketing")
    page = web.get(f"/admin/templates/welcome?programme={prog.slug}")
    token = csrf_of(page.text)
    wording = {
        "csrf": token,
        "subject": "Hallo {{ first_name }}!",
        "text": "Dein Stand: {{ balance }} {{ balance_label }}.",
        "html": "<p>Willkommen, <b>{{ first_name }}</b>! Karte {{ card_number }}</p>",
    }
    previewed = web.post(
        f"/admin/templates/welcome/de?programme={prog.slug}",
        data={**wording, "action": "preview"},
    )
    assert previewed.status_code == 200
    assert "Willkommen, <b>Lena</b>" in _srcdoc(previewed.text, "de")
    assert re.search(r'preview-subject-de">Hallo Lena!<', previewed.text)
    assert _stored(db, prog) == []  # a preview saves nothing

    saved = web.post(
        f"/admin/templates/welcome/de?programme={prog.slug}",
        data={**wording, "action": "save"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    [row] = _stored(db, prog)
    assert (row.key, row.lang, row.version, row.updated_by) == (
        "welcome",
        "de",
        1,
        f"staff:{email}",
    )
    again = web.post(
        f"/admin/templates/welcome/de?programme={prog.slug}",
        data={**wording, "subject": "Moin {{ first_name }}", "action": "save"},
        follow_redirects=False,
    )
    assert again.status_code == 303
    [row] = _stored(db, prog)
    assert (row.subject, row.version) == ("Moin {{ first_name }}", 2)
    page = web.get(f"/admin/templates/welcome?programme={prog.slug}")
    assert re.search(r'preview-subject-de">Moin Lena<', page.text)
    assert "Lena" in _frame(web, prog, "en")  # English keeps the shipped wording
    assert "Willkommen, <b>Lena</b>" in _frame(web, prog, "de")

    reset = web.post(
        f"/admin/templates/welcome/de/reset?programme={prog.slug}",
        data={"csrf": token},
        follow_redirects=False,
    )
    assert reset.status_code == 303
    assert _stored(db, prog) == []


def test_a_syntax_error_is_shown_in_place_and_not_saved(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    token = csrf_of(web.get(f"/admin/templates/welcome?programme={prog.slug}").text)
    for action in ("save", "preview"):
        refused = web.post(
            f"/admin/templates/welcome/en?programme={prog.slug}",
            data={
                "csrf": token,
                "subject": "Hi",
                "text": "Hello\n{{ frist_name }}",
                "html": "<p>{% if %}</p>",
                "action": action,
            },
        )
        assert refused.status_code == (422 if action == "save" else 200)
        error = re.search(r'data-testid="template-error-en">(.*?)</div>', refused.text, re.S)
        assert error is not None
        assert "line 2" in error.group(1) or "line 1" in error.group(1)
        assert "{{ frist_name }}" in refused.text  # what was typed stays
        assert 'data-testid="template-error-de"' not in refused.text
    assert _stored(db, prog) == []


def test_a_template_cannot_run_script_in_the_console(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    token = csrf_of(web.get(f"/admin/templates/welcome?programme={prog.slug}").text)
    answer = web.post(
        f"/admin/templates/welcome/en?programme={prog.slug}",
        data={
            "csrf": token,
            "subject": "Hi",
            "text": "Hello",
            "html": '<script>alert(1)</script><img src=x onerror="alert(2)">',
            "action": "preview",
        },
    )
    assert answer.status_code == 200
    # the markup is only inside the sandboxed frame's attribute, escaped
    assert "<script>alert(1)" not in answer.text
    assert "<img src=x" not in answer.text
    assert "<script>alert(1)</script>" in _srcdoc(answer.text, "en")
    assert "script-src 'self'" in answer.headers["content-security-policy"]


@pytest.mark.parametrize("role", ["support", "analyst"])
def test_read_only_roles_are_refused_every_write(db: Database, role: str) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, role)
    page = web.get(f"/admin/templates/welcome?programme={prog.slug}")
    assert page.status_code == 200
    token = csrf_of(page.text)
    data = {"csrf": token, "subject": "x", "text": "x", "html": "x"}
    for action in ("save", "preview"):
        answer = web.post(
            f"/admin/templates/welcome/de?programme={prog.slug}", data={**data, "action": action}
        )
        assert answer.status_code == 403
    reset = web.post(f"/admin/templates/welcome/de/reset?programme={prog.slug}", data=data)
    assert reset.status_code == 403
    assert _stored(db, prog) == []


def test_a_post_without_the_form_token_is_refused(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "marketing")
    answer = web.post(
        f"/admin/templates/welcome/de?programme={prog.slug}",
        data={"subject": "x", "text": "x", "html": "x", "action": "save"},
    )
    assert answer.status_code == 403
    assert _stored(db, prog) == []


def test_preview_message_uses_the_first_member_and_fills_the_gaps(db: Database) -> None:
    prog = f.programme(db, name="Treu Markt")
    with db.unit_of_work(write=False) as session:
        programme = session.get_one(Programme, prog.id)
        empty = preview_message(session, programme=programme, key="welcome", lang="de", stored=None)
    assert "Anna" in empty.html  # the sample member of a programme without members
    f.member(db, prog, first_name="Lena")
    f.member(db, prog, first_name="Jonas")
    with db.unit_of_work(write=False) as session:
        programme = session.get_one(Programme, prog.id)
        shipped = preview_message(
            session, programme=programme, key="tier_at_risk", lang="en", stored=None
        )
        own = preview_message(
            session,
            programme=programme,
            key="welcome",
            lang="de",
            stored=TemplateSource("Hi {{ first_name }}", "{{ coupon_code }}", "<p>x</p>"),
        )
        with pytest.raises(TemplateProblem):
            preview_message(
                session,
                programme=programme,
                key="welcome",
                lang="de",
                stored=TemplateSource("{{ nope }}", "", ""),
            )
    assert "Lena" in shipped.text
    assert "100 points" in shipped.text  # the sample of what is missing to keep a tier
    assert own.subject == "Hi Lena"
    assert "TREU" in own.text  # a sample coupon code
    assert "Treu Markt" in own.html  # the shipped layout around the stored wording
