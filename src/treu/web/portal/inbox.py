"""The member's in-app inbox: their messages newest first, the unread ones marked (in
words, not only in bold), one message on its own page, and "mark as read" / "mark all
as read" as forms (POST with the session's CSRF token; opening a message changes
nothing). The same service as ``/v1/members/{id}/inbox``; another member's message is
not found."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from treu.kit.text import N_
from treu.kit.time import utc_now
from treu.messaging.inbox import inbox
from treu.programmes.service import programmes
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import render
from treu.web.security import check_csrf

PAGE = 20

PORTAL.link("/portal/inbox", N_("Inbox"), order=60)


@router.get("/inbox")
def inbox_page(
    request: Request,
    member: Annotated[Signed, Depends(need_member)],
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        page = inbox.list(session, member_id=member.id, limit=PAGE, cursor=before)
        return render(
            request,
            "portal/inbox.html",
            timezone=timezone,
            member=member,
            page=page,
            first_page=before is None,
        )


@router.get("/inbox/{message_id}")
def message_page(
    request: Request, message_id: uuid.UUID, member: Annotated[Signed, Depends(need_member)]
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        message = inbox.get(session, member_id=member.id, message_id=message_id)
        return render(
            request,
            "portal/message.html",
            timezone=timezone,
            member=member,
            message=message,
        )


@router.post("/inbox/read-all")
def read_all(
    request: Request,
    member: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    check_csrf(csrf, member.csrf)
    with database(request).unit_of_work() as session:
        inbox.mark_all_read(session, member_id=member.id, now=utc_now())
    return RedirectResponse("/portal/inbox", status_code=303)


@router.post("/inbox/{message_id}/read")
def read_one(
    request: Request,
    message_id: uuid.UUID,
    member: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    check_csrf(csrf, member.csrf)
    with database(request).unit_of_work() as session:
        inbox.mark_read(session, member_id=member.id, message_id=message_id, now=utc_now())
    return RedirectResponse("/portal/inbox", status_code=303)
