"""A secret shown once: the API key or webhook secret a POST just made, carried to the
page the POST redirects to and gone after that page has shown it.

Post/redirect/get, so that reloading the page neither repeats the POST (a second key) nor
shows the secret again. The secret travels in a short-lived cookie that only the console
reads (``HttpOnly``, ``SameSite=Strict``, path ``/admin``), bound to the session that made
it; the page that shows it deletes it in the same answer. Nothing about it is stored on
the server: the database keeps only what it kept before (a key's hash, the endpoint's
signing secret).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from fastapi import Request, Response

from treu.web.admin.context import Staff

COOKIE = "treu_once"
LIFETIME = 120
"""Seconds: long enough for the redirect, short enough not to linger."""


@dataclass(frozen=True, slots=True)
class Revealed:
    kind: str
    """``apikey`` or ``webhook``."""
    subject: str
    """The key's lookup prefix or the endpoint's id."""
    secret: str


def keep(request: Request, response: Response, staff: Staff, revealed: Revealed) -> Response:
    """Carry ``revealed`` to the next page of ``staff``'s session."""
    value = json.dumps(
        {
            "s": str(staff.session.id),
            "k": revealed.kind,
            "i": revealed.subject,
            "v": revealed.secret,
        }
    )
    response.set_cookie(
        COOKIE,
        base64.urlsafe_b64encode(value.encode()).decode(),
        max_age=LIFETIME,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def take(
    request: Request, staff: Staff, *, kind: str, subject: str | None = None
) -> Revealed | None:
    """What a POST of this session left for this page (``kind``, and ``subject`` if
    given), or None. The caller shows it and calls ``forget`` on its answer."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
        found = Revealed(kind=str(value["k"]), subject=str(value["i"]), secret=str(value["v"]))
        session = str(value["s"])
    except (ValueError, KeyError, TypeError):
        return None
    if session != str(staff.session.id) or found.kind != kind:
        return None
    if subject is not None and found.subject != subject:
        return None
    return found


def forget(response: Response) -> Response:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
    return response
