"""What the console's catalogue pages (rewards, challenges) do alike, on both pages and
both databases: a refused form shown again with each error at its field, what was
typed kept and nothing saved; every write refused to roles that only read and to a
form without the session's token; a write to what does not exist the 404 page."""

from __future__ import annotations

import re
import uuid

import pytest

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from tests.support.catalogue import CHALLENGES, PAGES, REWARDS, Page, png
from treu.db.session import Database


@pytest.mark.parametrize(
    ("page", "fields", "field", "text"),
    [
        (REWARDS, {"points_cost": "0"}, "points_cost", "Mindestens 1."),
        (REWARDS, {"points_cost": "viele"}, "points_cost", "Bitte eine ganze Zahl eingeben."),
        (REWARDS, {"code": "Großbuchstaben"}, "code", "Nicht in der erwarteten Form."),
        (REWARDS, {"value": ""}, "value", "Für diese Art von Prämie nötig."),
        (REWARDS, {"sku": "SKU-1"}, "sku", "Diese Art von Prämie verwendet es nicht"),
        (REWARDS, {"min_tier": "platinum"}, "min_tier", "has no tier"),
        (REWARDS, {"value": "5,001"}, "value", "Bitte einen Betrag wie 5,50 eingeben."),
        (REWARDS, {"value": "inf"}, "value", "Bitte einen Betrag wie 5,50 eingeben."),
        (REWARDS, {"value": "1e999999999"}, "value", "Bitte einen Betrag wie 5,50 eingeben."),
        (REWARDS, {"points_cost": "9" * 30}, "points_cost", "Bitte eine ganze Zahl eingeben."),
        (CHALLENGES, {"trigger": "no_such_event"}, "trigger", "no_such_event"),
        (CHALLENGES, {"goal_target": "0"}, "goal_target", "Mindestens 1."),
        (CHALLENGES, {"goal_target": "drei"}, "goal_target", "Bitte eine ganze Zahl eingeben."),
        (CHALLENGES, {"reward_points": "0"}, "reward_points", "Punkte, ein Abzeichen oder beides"),
        (CHALLENGES, {"name_en": ""}, "name_en", "Pflichtfeld."),
        (CHALLENGES, {"code": "Bad Code"}, "code", "Nicht in der erwarteten Form."),
        (CHALLENGES, {"max_completions": "3"}, "form", "fester Zeitraum"),
    ],
    ids=str,
)
def test_errors_are_shown_at_their_field(
    db: Database, page: Page, fields: dict[str, str], field: str, text: str
) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = fields.get("code", f.unique("x"))
    answer = page.create(web, prog, **{"code": code, **fields})
    assert answer.status_code == 422
    assert 'data-testid="form-errors"' in answer.text
    if field == "form":  # the whole form's: atop it
        box = answer.text.split('data-testid="form-errors"', 1)[1].split("</div>", 1)[0]
        assert text in box
    else:
        shown = re.search(
            rf'<p class="error field-error" id="e-{field}"[^>]*>([^<]*)<', answer.text
        )
        assert shown is not None, answer.text
        assert text in shown.group(1)
        assert f'id="f-{field}"' in answer.text
        assert 'aria-invalid="true"' in answer.text
    assert f'value="{page.kept}"' in answer.text  # what was typed is still there
    assert not page.saved(db, code)


@pytest.mark.parametrize("page", PAGES, ids=str)
@pytest.mark.parametrize("role", ["support", "analyst"])
def test_support_and_analyst_read_but_every_write_is_refused(
    db: Database, page: Page, role: str
) -> None:
    prog = f.programme(db)
    item = page.make(db, prog)
    before = page.state(db, item)
    web, _email = signed_in(db, role)
    listed = web.get(f"{page.path}?programme={prog.slug}")
    assert listed.status_code == 200
    shown = web.get(f"{page.path}/{item.id}")
    assert shown.status_code == 200
    assert "<fieldset disabled" in shown.text
    for path, _extra in page.writes[2:]:  # the actions: not offered
        assert path.format(id=item.id) not in shown.text
    assert web.get(f"{page.path}/new?programme={prog.slug}").status_code == 403
    token = csrf_of(listed.text)  # the sign-out form's: a valid token
    for path, extra in page.writes:
        answer = web.post(
            path.format(id=item.id),
            data={"csrf": token, **page.form(prog), **extra},
            files={"image": ("a.png", png(), "image/png")},
        )
        assert answer.status_code == 403, path
    assert page.state(db, item) == before


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_a_form_without_the_session_token_is_refused(db: Database, page: Page) -> None:
    prog = f.programme(db)
    item = page.make(db, prog)
    before = page.state(db, item)
    web, _email = signed_in(db, "marketing")
    for path, extra in page.writes:
        for token in ("", "forged"):
            answer = web.post(
                path.format(id=item.id), data={"csrf": token, **page.form(prog), **extra}
            )
            assert answer.status_code == 403, path
    assert page.state(db, item) == before


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_a_write_to_what_does_not_exist_is_not_found_not_a_form_error(
    db: Database, page: Page
) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    token = csrf_of(web.get(f"{page.path}?programme={prog.slug}").text)
    missing = uuid.uuid4()
    for path, extra in page.writes[1:]:
        answer = web.post(path.format(id=missing), data={"csrf": token, **page.form(prog), **extra})
        assert answer.status_code == 404, path
        assert 'data-testid="form-errors"' not in answer.text
