"""What every page gets: security headers, CSRF checks, and errors as pages.

``WebRoute`` is the route class of every web router: each answer — page, redirect or
error — carries ``HEADERS`` (a Content-Security-Policy without inline scripts or styles,
so an injected ``<script>`` does not run; no framing; no sniffing; the path only as
referrer) and HSTS over TLS. A ``TreuError`` raised by a handler or a dependency becomes
the error page with its status (or, for ``SignInRequired``, a redirect to the sign-in
page) instead of a problem+json document.

CSRF: every form carries the session's token (``csrf`` in ``treu.auth.sessions``) in a
hidden ``csrf`` field, compared in constant time before any POST does anything. The
sign-in form has no session yet; it carries a token that is also in a short-lived cookie
(double submit). The session cookies are ``SameSite=Lax`` besides, so another site's
form cannot post with them at all in current browsers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from treu.auth.sessions import POLICIES
from treu.db.text import nul_in_text
from treu.errors import Forbidden, Invalid, NotFound, TreuError

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000; includeSubDomains"
PRE_CSRF_COOKIE = "treu_csrf"
LANG_COOKIE = "treu_lang"


class SignInRequired(TreuError):
    """Not signed in (or the session ended): the page sends the browser to sign in."""

    code = "sign_in_required"
    http_status = 401
    title = "Sign in first"

    def __init__(self, detail: str, *, sign_in: str) -> None:
        super().__init__(detail)
        self.sign_in = sign_in


class CsrfRefused(Forbidden):
    code = "csrf_refused"
    title = "The form has expired; reload the page and send it again"


def secure_headers(request: Request, response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.url.scheme == "https":
        response.headers["Strict-Transport-Security"] = HSTS
    return response


def check_csrf(sent: str | None, expected: str | None) -> None:
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        raise CsrfRefused("the form has expired; reload the page and send it again")


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(24)


def with_pre_csrf(request: Request, response: Response, token: str, *, path: str) -> Response:
    """The sign-in form's double-submit cookie: an hour, HTTP only, SameSite=Strict,
    Secure over TLS, sent only to the sign-in page's ``path``."""
    response.set_cookie(
        PRE_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=path,
    )
    return response


def with_session(
    request: Request, response: Response, *, cookie: str, token: str, kind: str, path: str
) -> Response:
    """A session cookie: HTTP only, SameSite=Lax, Secure over TLS, only under ``path``
    (``/portal`` or ``/admin``), for as long as a session of its ``kind`` can last. The
    pre-sign-in cookie of that area's sign-in page has done its work and goes."""
    response.set_cookie(
        cookie,
        token,
        max_age=int(POLICIES[kind].lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=path,
    )
    response.delete_cookie(PRE_CSRF_COOKIE, path=f"{path}/sign-in")
    return response


def with_language(response: Response, language: str) -> Response:
    """The visitor's chosen language, for a year, on every path (portal and console)."""
    response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, samesite="lax", path="/")
    return response


def error_page(request: Request, error: TreuError) -> Response:
    from treu.web.render import render

    if isinstance(error, SignInRequired):
        target = f"{error.sign_in}?next={quote(request.url.path)}"
        if request.headers.get("hx-request") == "true":
            # htmx would follow a 303 and put the sign-in page into the part it swaps:
            # it navigates the whole page to this address instead.
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    return render(
        request,
        "error.html",
        status_code=error.http_status,
        status=error.http_status,
        title=error.title,
        detail=error.detail,  # shown to staff; members get a sentence in their language
    )


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except TreuError as error:
                response = error_page(request, error)
            except RequestValidationError as error:
                # A page's address or query that does not parse (an id that is no UUID):
                # the page for it, not the API's problem+json.
                in_path = any(e.get("loc", ("",))[0] == "path" for e in error.errors())
                response = error_page(
                    request,
                    NotFound("no such page") if in_path else Invalid("this request is not valid"),
                )
            except Exception as error:
                nul = nul_in_text(error)
                if nul is None:
                    raise
                response = error_page(request, nul)
            return secure_headers(request, response)

        return route
