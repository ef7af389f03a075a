"""Challenges and badges: the active challenges open now with the member's progress in
the current period, those completed, and the badges earned — from the challenges
service (``challenges.overview``, as ``GET /v1/members/{id}/challenges``) and the badges
the earning rules awarded (as ``GET /v1/members/{id}/badges``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from treu.challenges.service import challenges
from treu.kit.text import N_
from treu.members.service import members
from treu.programmes.service import programmes
from treu.rules.badges import badges_of
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render

COMPLETED = 20

PORTAL.link("/portal/challenges", N_("Challenges"), order=50)


@router.get("/challenges")
def challenges_page(request: Request, member: Annotated[Signed, Depends(need_member)]) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        found = members.get(session, member.id)
        overview = challenges.overview(session, member=found, lang=lang, history_limit=COMPLETED)
        earned = badges_of(session, member_id=member.id, lang=lang)
        return render(
            request,
            "portal/challenges.html",
            timezone=timezone,
            member=member,
            overview=overview,
            badges=earned,
        )
