"""The admin console (``/admin``): staff sign in and run the programme.

A page is one small module here that adds its routes to ``router`` with the permission it
needs (``need("members.read")``), plus a template under ``templates/admin/``; importing
the module below registers it. Handlers call the same services as the API in one unit of
work; they decide nothing a service does not.
"""

from __future__ import annotations

from treu.web.routing import Router
from treu.web.security import WebRoute

router = Router(prefix="/admin", route_class=WebRoute, include_in_schema=False)

# The pages register themselves on ``router`` when imported.
from treu.web.admin import (  # noqa: E402, F401
    account,
    api_keys,
    audit,
    campaigns,
    challenges,
    dashboard,
    home,
    insights,
    journeys,
    member,
    rewards,
    rules,
    signin,
    staff_list,
    templates_page,
    tiers,
    webhooks,
)
