"""Stored templates: refused when saved unless they render in the sandbox (with the
line), previewed for a real member in their language, and in force for a real
delivery instead of the shipped files."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.messaging.conftest import App, AppFactory, dev_settings
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.delivery.worker import Deliverer
from treu.messaging.errors import TemplateProblem
from treu.messaging.models import DevMail, MessageTemplate
from treu.messaging.stored import sample_variables
from treu.messaging.templates import renderer
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.tiers.schemas import TierCreate
from treu.tiers.service import tiers
from treu.worker.channels import build_channels

NBSP = "\xa0"
GOOD = {
    "key": "welcome",
    "lang": "de",
    "subject": "Hallo {{ first_name }}",
    "text": "Dein Stand: {{ balance }} {{ balance_label }}",
    "html": "<p>Dein Stand: {{ balance }}</p>",
}
ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
]


def save(app: App, prog: Programme, **parts: Any) -> Any:
    body = {**GOOD, "programme": prog.slug, **parts}
    return app.client.post("/v1/templates", json=body, headers=app.headers("admin"))


def test_a_template_that_does_not_compile_is_refused_with_its_line(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with()
    prog = f.programme(db)
    answer = save(app, prog, text="Hallo\n{% if first_name %}\n{{ first_name }\n{% endif %}")
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "template_error"
    assert problem["line"] == 3
    assert problem["template"] == "text"
    assert "line 3" in problem["detail"]
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(MessageTemplate)).all() == []


def test_an_unknown_variable_is_refused_with_its_line(db: Database, app_with: AppFactory) -> None:
    app = app_with()
    prog = f.programme(db)
    html = "<p>Hallo</p>\n{% if false %}\n<p>{{ frist_name }}</p>\n{% endif %}"
    answer = save(app, prog, html=html)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["line"] == 3
    assert problem["template"] == "html"
    assert "frist_name" in problem["detail"]
    assert save(app, prog, key="no_such_message").status_code == 422


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_sandbox_escape_is_refused_when_saved(
    db: Database, app_with: AppFactory, escape: str
) -> None:
    app = app_with()
    prog = f.programme(db)
    answer = save(app, prog, text=f"Hallo\n{escape}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "template_error"
    assert answer.json()["line"] == 2
    # and rendered directly, it renders nothing: it fails
    with pytest.raises(TemplateProblem) as failed:
        renderer.render(escape, sample_variables("de"), "de")
    assert failed.value.message.startswith("not allowed: access to attribute")
    assert "is unsafe" in failed.value.message
    for part in ("subject", "html"):
        assert save(app, prog, **{part: escape}).status_code == 422


def _tiered(db: Database) -> Programme:
    """Gold at €1,234.50 spend; points expire at the end of the year they were earned."""
    prog = f.programme(
        db,
        timezone="Europe/Berlin",
        expiry={"policy": "fixed", "years": 0},
        tier_settings={"metric": "spend", "grace_days": 0},
    )
    ladder = [
        {"code": "bronze", "rank": 0, "name": {"en": "Bronze", "de": "Bronze"}, "threshold": 0},
        {"code": "gold", "rank": 1, "name": {"en": "Gold", "de": "Gold"}, "threshold": 123_450},
    ]
    with db.unit_of_work() as session:
        attached = programmes.get(session, prog.id)
        for spec in ladder:
            tiers.create(
                session, programme=attached, data=TierCreate.model_validate(spec), actor="test"
            )
    return prog


PREVIEW = {
    "subject": "{{ first_name }}: {{ balance }} {{ balance_label }}",
    "text": (
        "{{ points }} {{ points_label }} / {{ expires_on }}\n"
        "{{ tier }} -> {{ next_tier }}: {{ next_tier_missing }}\n"
        "{{ coupon_code }}"
    ),
    "html": "<div>{{ coupon_qr }}</div><p>{{ first_name }}</p>",
}


def test_preview_renders_for_a_real_member_in_german_and_english(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with()
    prog = _tiered(db)
    anna = f.member(db, prog, language="de", first_name="<Anna>")
    f.earn(db, prog, anna, 1234)  # at 1 June 2026: expires 31 December 2026
    previews = {}
    for lang in ("de", "en"):
        saved = save(app, prog, lang=lang, **PREVIEW)
        assert saved.status_code == 201, saved.text
        answer = app.client.post(
            f"/v1/templates/{saved.json()['id']}/preview",
            json={"member_id": str(anna.id)},
            headers=app.headers("admin"),
        )
        assert answer.status_code == 200, answer.text
        previews[lang] = answer.json()
    de, en = previews["de"], previews["en"]
    assert de["subject"] == "<Anna>: 1.234 Punkte"
    assert "1.234 Punkte / 31.12.2026" in de["text"]
    assert f"Bronze -> Gold: 1.234,50{NBSP}€ Umsatz für Gold" in de["text"]  # Babel (CLDR: NBSP)
    assert en["subject"] == "<Anna>: 1,234 points"
    assert "1,234 points / Dec 31, 2026" in en["text"]
    assert "Bronze -> Gold: €1,234.50 spend for Gold" in en["text"]
    assert "TREU-0000-SAMP" in de["text"]  # no coupon yet: a sample code
    assert "<svg" in de["html"]  # the QR code, inline
    assert "<p>&lt;Anna&gt;</p>" in de["html"]  # the name is escaped, the SVG is not
    assert "/u/" in de["text"]  # the layout's footer, with the unsubscribe link


def test_preview_shows_the_members_latest_coupon(db: Database, app_with: AppFactory) -> None:
    app = app_with()
    prog = f.programme(db)
    who, coupon = f.coupon(db, prog)
    saved = save(app, prog, text="{{ coupon_code }} {{ reward }} {{ coupon_offer }}")
    answer = app.client.post(
        f"/v1/templates/{saved.json()['id']}/preview",
        json={"member_id": str(who.id)},
        headers=app.headers("admin"),
    )
    assert answer.status_code == 200, answer.text
    text = answer.json()["text"]
    code = coupon.code
    assert f"{code[:4]}-{code[4:8]}" in text
    assert "5-€-Gutschein" in text


def test_templates_are_listed_changed_and_deleted_with_an_audit_trail(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with()
    admin = app.headers("admin")
    prog = f.programme(db)
    created = save(app, prog)
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["version"] == 1
    assert save(app, prog).status_code == 409  # one per programme, key and language
    listed = app.client.get(f"/v1/templates?programme={prog.slug}", headers=admin).json()
    assert [t["id"] for t in listed["items"]] == [template["id"]]
    changed = app.client.put(
        f"/v1/templates/{template['id']}",
        json={"subject": "Neu", "text": "Neu", "html": "<p>{{ oops }}</p>"},
        headers=admin,
    )
    assert changed.status_code == 422
    changed = app.client.put(
        f"/v1/templates/{template['id']}",
        json={"subject": "Neu", "text": "Neu", "html": "<p>Neu</p>"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert app.client.get(f"/v1/templates/{template['id']}", headers=admin).json()["subject"] == (
        "Neu"
    )
    variables = app.client.get("/v1/templates/variables", headers=admin).json()
    assert "welcome" in variables["keys"]
    assert {"first_name", "coupon_qr", "next_tier_missing"} <= {
        v["name"] for v in variables["variables"]
    }
    assert app.client.get("/v1/templates", headers=app.headers("members:read")).status_code == 403
    gone = app.client.delete(f"/v1/templates/{template['id']}", headers=admin)
    assert gone.status_code == 204
    assert app.client.get(f"/v1/templates/{template['id']}", headers=admin).status_code == 404
    with db.unit_of_work(write=False) as session:
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject_id == template["id"])
            .order_by(AuditEvent.id)
        ).all()
    assert actions == ["template.created", "template.updated", "template.deleted"]


def test_a_stored_template_words_a_real_delivery(fresh_db: Database, app_with: AppFactory) -> None:
    settings = dev_settings(fresh_db)
    app = app_with(settings, fresh_db)
    prog = f.programme(fresh_db)
    saved = save(
        app,
        prog,
        subject="Schön, dass du da bist, {{ first_name }}",
        text="Karte {{ card_number }}",
        html="<p>Karte {{ card_number }}</p>",
    )
    assert saved.status_code == 201, saved.text
    anna = f.member(fresh_db, prog, language="de", first_name="Anna")
    john = f.member(fresh_db, prog, language="en", first_name="John")  # no English template
    deliverer = Deliverer(fresh_db, build_channels(settings), threads=1)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()
    with fresh_db.unit_of_work(write=False) as session:
        mails = {m.recipient: m for m in session.scalars(select(DevMail))}
    german = mails[str(anna.email)]
    assert german.subject == "Schön, dass du da bist, Anna"
    assert german.text.startswith(f"Karte {anna.card_number}")
    assert "/u/" in german.text  # still in the shipped layout
    assert f"<p>Karte {anna.card_number}</p>" in german.html
    assert mails[str(john.email)].subject == "Welcome to Test programme!"
