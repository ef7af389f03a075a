"""The admin console under test: staff accounts and a signed-in client."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.staff.service import staff

PASSWORD = "a perfectly long passphrase"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def staff_account(db: Database, role: str) -> tuple[str, str]:
    """A new staff account of ``role``: its e-mail and one-time password."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.org"
    with db.unit_of_work() as session:
        _, password = staff.create(session, email=email, role=role, actor="test")
    return email, password


def client(db: Database) -> TestClient:
    return TestClient(create_app(Settings(database_url=db.url), database=db))


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(web: TestClient, email: str, password: str) -> str:
    """Sign in; returns where the console sent the browser."""
    form = web.get("/admin/sign-in")
    answer = web.post(
        "/admin/sign-in",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def signed_in(db: Database, role: str) -> tuple[TestClient, str]:
    """A client signed in as a new account of ``role`` that chose its password."""
    email, once = staff_account(db, role)
    web = client(db)
    assert sign_in(web, email, once) == "/admin/password"
    page = web.get("/admin/password")
    done = web.post(
        "/admin/password",
        data={"csrf": csrf_of(page.text), "current": once, "new": PASSWORD, "repeat": PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return web, email
