"""Privacy: download one's data (a JSON file of everything Treu holds about the member,
built by ``treu.privacy.service``) and ask to be erased (recorded once, audit-logged,
shown to staff on the member's page; carrying it out is a later feature)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.kit.lang import LANGUAGES
from treu.kit.text import N_, translate
from treu.kit.time import utc_now
from treu.members.service import members
from treu.privacy.service import privacy
from treu.programmes.service import programmes
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import render
from treu.web.security import check_csrf

PATH = "/portal/privacy"
ROUTE = "/privacy"  # under the router's /portal
PORTAL.link(PATH, N_("Privacy"), order=80)
CONFIRM = N_("DELETE")
"""The word a member types to confirm, in their language (either language's word does)."""


def _confirmed(word: str) -> bool:
    typed = word.strip().upper()
    return any(typed == translate(lang, CONFIRM).upper() for lang in LANGUAGES)


def _page(
    request: Request, signed: Signed, *, status_code: int = 200, error: str | None = None
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
        pending = privacy.open_request(session, member.id)
        return render(
            request,
            "portal/privacy.html",
            status_code=status_code,
            timezone=programme.timezone,
            member=signed,
            pending=pending,
            error=error,
            word=CONFIRM,
            done=request.query_params.get("done"),
        )


@router.get(ROUTE)
def privacy_page(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    return _page(request, signed)


@router.get(f"{ROUTE}/export")
def export(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    """The member's data as a JSON file to keep (reading only: a link, no form)."""
    now = utc_now()
    with database(request).unit_of_work(write=False) as session:
        data = privacy.export(session, member_id=signed.id, now=now)
    name = f"treu-my-data-{now.date().isoformat()}.json"
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(f"{ROUTE}/delete")
def request_deletion(
    request: Request,
    signed: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    confirm: Annotated[str, Form(max_length=100)] = "",
    understood: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Asked twice (the box ticked and the word typed), recorded once."""
    check_csrf(csrf, signed.csrf)
    if understood != "yes" or not _confirmed(confirm):
        return _page(request, signed, status_code=422, error="confirm")

    def work(session: Session, _attempt: int) -> None:
        member = members.get(session, signed.id)
        privacy.request_deletion(
            session, member=member, source="portal", actor=f"member:{member.id}"
        )

    database(request).retrying(work, retry_on=(IntegrityError,))
    return RedirectResponse(f"{PATH}?done=requested", status_code=303)
