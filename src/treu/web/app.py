"""Puts the web next to the API: the console's and the portal's routes and the static
files."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from treu.web.render import STATIC


class _Static(StaticFiles):
    """Treu's own style sheet, scripts and fonts (no CDN). Addresses carry a hash of the
    file (``render.static_url``), so they may be cached for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def install(app: FastAPI) -> None:
    from treu.web.admin import router as admin
    from treu.web.media import router as media
    from treu.web.portal import router as portal

    app.include_router(admin)
    app.include_router(portal)
    app.include_router(media)
    directory = str(resources.files("treu.web").joinpath("static"))
    app.mount(STATIC, _Static(directory=directory), name="static")
