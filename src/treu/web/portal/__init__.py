"""The member portal (``/portal``, mobile first): a member signs in with a one-time code
sent by e-mail and sees their points, card, rewards, coupons, challenges, inbox, profile
and privacy choices.

As in the console, a page is one small module here that adds its routes to ``router``
(with ``Depends(need_member)``) and its link to ``PORTAL`` (``treu.web.nav``), plus a
template under ``templates/portal/`` extending ``portal/layout.html``; importing the
module below registers it. Handlers call the same services as the API in one unit of
work. The core flows (see the balance, show the card, redeem) are plain links and forms:
they work without JavaScript.
"""

from __future__ import annotations

from treu.web.routing import Router
from treu.web.security import WebRoute

router = Router(prefix="/portal", route_class=WebRoute, include_in_schema=False)

# The pages register themselves on ``router`` when imported.
from treu.web.portal import (  # noqa: E402, F401
    card,
    challenges,
    coupons,
    history,
    home,
    inbox,
    privacy,
    profile,
    rewards,
    session_pages,
    signin,
)
