"""``Router``: FastAPI's ``APIRouter`` that looks at a request only when its path is under
the router's prefix.

FastAPI finds a request's route by asking every route of every included router in turn,
and an included router tries all its routes even when none can match: a request for the
portal's home page was compared with 205 routes, a quarter of the page's CPU time in a
profile (``docs/performance.md``). Every route of a router has the router's prefix, so a
path outside it cannot match any of them; ``matches`` says so at once. Both the API's
and the pages' routers are made with it (``treu.web`` is below ``treu.api`` in the
layers, so both can import it).

If FastAPI stops asking the router itself (``APIRouter.matches``) when it matches an
included router, the gate is simply not consulted: requests are routed as before, only
not faster. ``tests/api/test_routing.py`` checks that it is consulted.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class Router(APIRouter):
    gate: str
    """The path every route of this router starts with: the prefix it was included
    with, then its own prefix or, without one, what its routes' paths have in common up
    to their first parameter (``include``, called by ``TreuAPI.include_router``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = self.prefix

    def include(self, prefix: str = "") -> None:
        """Set the gate for an inclusion under ``prefix`` (routes already declared)."""
        own = self.prefix
        if not own:
            paths = [getattr(route, "path", "") for route in self.routes]
            own = os.path.commonpath(paths).split("{", 1)[0] if paths else ""
        self.gate = prefix + own

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        gate = self.gate
        if gate and not _route_path(scope).startswith(gate):
            return Match.NONE, {}
        return super().matches(scope)


def _route_path(scope: Scope) -> str:
    """The path the routes are matched against: without the application's root path."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path
