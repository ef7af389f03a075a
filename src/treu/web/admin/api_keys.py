"""API keys in the console (admins only): the keys with their scopes and when each was
last used, a new key (shown once), and revoking one after a confirmation.

The same service as ``treu apikey`` creates and revokes them, and both are in the audit
log under the staff member's name. Only a hash of a key is stored: the key is on the
page that follows its creation and nowhere after (``treu.web.admin.once``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.auth.errors import ApiKeyNotFound
from treu.auth.service import LOOKUP_LENGTH, PREFIX, SCOPE_HELP, SCOPES, api_keys
from treu.errors import TreuError
from treu.kit.text import N_
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.admin.once import Revealed, forget, keep, take
from treu.web.nav import ADMIN
from treu.web.render import render
from treu.web.security import check_csrf

ADMIN.link("/admin/api-keys", N_("API keys"), order=100, permission="apikeys.manage")

Manager = Annotated[Staff, Depends(need("apikeys.manage"))]
Csrf = Annotated[str, Form(max_length=100)]


def _page(
    request: Request,
    staff: Staff,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, object] | None = None,
    done: str | None = None,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        keys = list(reversed(api_keys.list(session)))
    revealed = take(request, staff, kind="apikey")
    answer = render(
        request,
        "admin/api_keys.html",
        status_code=status_code,
        staff=staff,
        keys=keys,
        prefix=PREFIX,
        scopes=[(scope, SCOPE_HELP[scope]) for scope in SCOPES],
        created=revealed,
        error=error,
        done=done,
        form=form or {"name": "", "scopes": []},
    )
    return forget(answer) if revealed else answer


@router.get("/api-keys")
def api_keys_page(request: Request, staff: Manager) -> Response:
    return _page(request, staff, done=request.query_params.get("done"))


@router.post("/api-keys")
def create_key(
    request: Request,
    staff: Manager,
    csrf: Csrf,
    name: Annotated[str, Form(max_length=100)],
    scopes: Annotated[list[str] | None, Form()] = None,
) -> Response:
    check_csrf(csrf, staff.csrf)
    chosen = scopes or []
    form: dict[str, object] = {"name": name, "scopes": chosen}
    if not name.strip():
        return _page(request, staff, status_code=422, error="name", form=form)
    if not chosen:
        return _page(request, staff, status_code=422, error="scopes", form=form)
    try:
        with database(request).unit_of_work() as session:
            key, plaintext = api_keys.create(
                session, name=name.strip(), scopes=chosen, actor=f"staff:{staff.email}"
            )
            lookup = key.lookup
    except TreuError as error:
        return _page(request, staff, status_code=422, error=error.detail, form=form)
    answer = RedirectResponse("/admin/api-keys?done=created", status_code=303)
    return keep(request, answer, staff, Revealed("apikey", lookup, plaintext))


@router.get("/api-keys/{lookup}/revoke")
def confirm_revoke(request: Request, lookup: str, staff: Manager) -> Response:
    """The confirmation: revoking cannot be undone, and whatever uses the key stops."""
    with database(request).unit_of_work(write=False) as session:
        key = api_keys.active(session, lookup=lookup)
        return render(request, "admin/api_key_revoke.html", staff=staff, key=key, prefix=PREFIX)


@router.post("/api-keys/{lookup}/revoke")
def revoke_key(request: Request, lookup: str, staff: Manager, csrf: Csrf) -> Response:
    check_csrf(csrf, staff.csrf)
    with database(request).unit_of_work() as session:
        revoked = api_keys.revoke(session, lookup=lookup, actor=f"staff:{staff.email}")
    if not revoked:
        raise ApiKeyNotFound(f"no active API key {PREFIX}{lookup[:LOOKUP_LENGTH]}")
    return RedirectResponse("/admin/api-keys?done=revoked", status_code=303)
