"""API keys in the console over HTTP: admins only (every other role is refused on the
server, for the page and for a forged POST alike), the key shown once and working, a
revocation after its confirmation that the API feels at once, and both in the audit
log under the staff member's name."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.admin import csrf_of, signed_in
from treu.audit.models import AuditEvent
from treu.auth.models import ApiKey
from treu.auth.service import PREFIX, api_keys
from treu.db.session import Database

KEY = f"{PREFIX}[A-Za-z0-9]{{44}}"


def _keys_named(db: Database, name: str) -> list[ApiKey]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(ApiKey).where(ApiKey.name == name)))


def _create(web: TestClient, csrf: str, name: str, *scopes: str) -> str:
    answer = web.post(
        "/admin/api-keys",
        data={"csrf": csrf, "name": name, "scopes": list(scopes)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def test_only_admins_reach_api_keys_get_or_post(db: Database) -> None:
    with db.unit_of_work() as session:
        victim, _ = api_keys.create(
            session, name=f"victim-{uuid.uuid4().hex[:8]}", scopes=["admin"]
        )
        lookup = victim.lookup
    for role in ("support", "marketing", "analyst"):
        web, _ = signed_in(db, role)
        home = web.get("/admin")
        assert 'href="/admin/api-keys"' not in home.text
        csrf = csrf_of(home.text)  # a valid token of the session: only the role refuses
        assert web.get("/admin/api-keys").status_code == 403
        assert web.get(f"/admin/api-keys/{lookup}/revoke").status_code == 403
        name = f"forged-{role}-{uuid.uuid4().hex[:8]}"
        forged = web.post(
            "/admin/api-keys",
            data={"csrf": csrf, "name": name, "scopes": ["admin"]},
            follow_redirects=False,
        )
        assert forged.status_code == 403
        assert _keys_named(db, name) == []
        revoke = web.post(
            f"/admin/api-keys/{lookup}/revoke", data={"csrf": csrf}, follow_redirects=False
        )
        assert revoke.status_code == 403
    with db.unit_of_work(write=False) as session:
        assert api_keys.active(session, lookup=lookup).revoked_at is None

    admin, _ = signed_in(db, "admin")
    assert 'href="/admin/api-keys"' in admin.get("/admin").text
    assert admin.get("/admin/api-keys").status_code == 200


def test_a_new_key_is_shown_once_and_works(db: Database) -> None:
    import re

    web, email = signed_in(db, "admin")
    page = web.get("/admin/api-keys")
    name = f"shop-{uuid.uuid4().hex[:8]}"
    assert _create(web, csrf_of(page.text), name, "members:read", "events:write") == (
        "/admin/api-keys?done=created"
    )
    shown = web.get("/admin/api-keys?done=created")
    found = re.findall(KEY, shown.text)
    assert len(found) == 1
    plaintext = found[0]
    assert name in shown.text
    # once: the next visit (a reload) has no key, only the note that it was shown
    again = web.get("/admin/api-keys?done=created")
    assert re.findall(KEY, again.text) == []
    assert plaintext not in again.text
    assert "nicht noch einmal angezeigt" in again.text
    # the key is real and is only stored hashed
    [row] = _keys_named(db, name)
    assert row.scopes == ["events:write", "members:read"]
    assert plaintext not in row.secret_hash
    assert f"{PREFIX}{row.lookup}" in again.text
    answer = web.get("/v1/programmes", headers={"Authorization": f"Bearer {plaintext}"})
    assert answer.status_code != 401
    with db.unit_of_work(write=False) as session:
        [entry] = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "apikey.created",
                AuditEvent.subject_id == f"{PREFIX}{row.lookup}",
            )
        )
        assert entry.actor == f"staff:{email}"
        assert plaintext not in str(entry.data)


def test_the_secret_is_for_the_session_that_made_it(db: Database) -> None:
    """Another admin's browser with the carried cookie sees nothing."""
    import re

    web, _ = signed_in(db, "admin")
    _create(web, csrf_of(web.get("/admin/api-keys").text), f"k-{uuid.uuid4().hex[:8]}", "admin")
    other, _ = signed_in(db, "admin")
    carried = web.cookies.get("treu_once")
    assert carried
    other.cookies.set("treu_once", carried, path="/admin")
    assert re.findall(KEY, other.get("/admin/api-keys").text) == []


def test_create_refuses_a_stale_form_and_asks_for_name_and_scope(db: Database) -> None:
    web, _ = signed_in(db, "admin")
    csrf = csrf_of(web.get("/admin/api-keys").text)
    name = f"csrf-{uuid.uuid4().hex[:8]}"
    stale = web.post(
        "/admin/api-keys",
        data={"csrf": "forged", "name": name, "scopes": ["admin"]},
        follow_redirects=False,
    )
    assert stale.status_code == 403
    assert _keys_named(db, name) == []
    none = web.post("/admin/api-keys", data={"csrf": csrf, "name": name})
    assert none.status_code == 422
    assert "mindestens einen Bereich" in none.text
    assert f'value="{name}"' in none.text  # what was typed stays
    blank = web.post("/admin/api-keys", data={"csrf": csrf, "name": "  ", "scopes": ["admin"]})
    assert blank.status_code == 422
    assert _keys_named(db, name) == []


def test_revoke_after_confirmation_stops_the_key(db: Database) -> None:
    web, email = signed_in(db, "admin")
    with db.unit_of_work() as session:
        name = f"till-{uuid.uuid4().hex[:8]}"
        key, plaintext = api_keys.create(session, name=name, scopes=["members:read"])
        lookup = key.lookup
    bearer = {"Authorization": f"Bearer {plaintext}"}
    assert web.get("/v1/programmes", headers=bearer).status_code != 401
    listed = web.get("/admin/api-keys")
    assert f'href="/admin/api-keys/{lookup}/revoke"' in listed.text
    confirm = web.get(f"/admin/api-keys/{lookup}/revoke")
    assert confirm.status_code == 200
    assert name in confirm.text
    # a stale form revokes nothing
    stale = web.post(f"/admin/api-keys/{lookup}/revoke", data={"csrf": "x"})
    assert stale.status_code == 403
    with db.unit_of_work(write=False) as session:
        assert api_keys.active(session, lookup=lookup)
    done = web.post(
        f"/admin/api-keys/{lookup}/revoke",
        data={"csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/admin/api-keys?done=revoked")
    assert web.get("/v1/programmes", headers=bearer).status_code == 401
    after = web.get("/admin/api-keys?done=revoked")
    assert f'href="/admin/api-keys/{lookup}/revoke"' not in after.text
    # twice: there is no active key to revoke any more
    assert web.get(f"/admin/api-keys/{lookup}/revoke").status_code == 404
    with db.unit_of_work(write=False) as session:
        actions = session.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.action == "apikey.revoked",
                AuditEvent.subject_id == f"{PREFIX}{lookup}",
            )
        ).all()
    assert actions == [f"staff:{email}"]
