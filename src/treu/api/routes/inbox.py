"""A member's in-app inbox (``/v1/members/{id}/inbox``): what the portal and apps show
(docs/email.md, "The in-app inbox")."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query

from treu.api.deps import DB, MembersRead, MembersWrite
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.kit.time import utc_now
from treu.members.service import members
from treu.messaging.inbox import inbox
from treu.messaging.schemas import InboxMessageOut, InboxOut, InboxReadAll
from treu.web.routing import Router

router = Router(prefix="/v1/members", tags=["inbox"], responses=PROBLEM_RESPONSES)

NO_MEMBER: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}
NO_MESSAGE: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member, or no such message in the inbox"}
}


@router.get("/{member_id}/inbox", response_model=InboxOut, responses=NO_MEMBER)
def get_inbox(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    unread: Annotated[bool, Query(description="Only unread messages")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> InboxOut:
    """The member's messages, newest first, with the count of unread ones."""
    with db.unit_of_work(write=False) as session:
        members.get(session, member_id)
        page = inbox.list(
            session, member_id=member_id, unread_only=unread, limit=limit, cursor=cursor
        )
        return InboxOut(
            member_id=member_id,
            unread=page.unread,
            items=[InboxMessageOut.of(m) for m in page.items],
            next_cursor=page.next_cursor,
        )


@router.post("/{member_id}/inbox/read-all", response_model=InboxReadAll, responses=NO_MEMBER)
def read_all(member_id: uuid.UUID, db: DB, _key: MembersWrite) -> InboxReadAll:
    """Mark every message read."""
    with db.unit_of_work() as session:
        members.get(session, member_id)
        marked = inbox.mark_all_read(session, member_id=member_id, now=utc_now())
        return InboxReadAll(member_id=member_id, marked=marked, unread=0)


@router.post(
    "/{member_id}/inbox/{message_id}/read", response_model=InboxMessageOut, responses=NO_MESSAGE
)
def read_one(
    member_id: uuid.UUID, message_id: uuid.UUID, db: DB, _key: MembersWrite
) -> InboxMessageOut:
    """Mark one message read (reading it again keeps the first time)."""
    with db.unit_of_work() as session:
        members.get(session, member_id)
        found = inbox.mark_read(session, member_id=member_id, message_id=message_id, now=utc_now())
        return InboxMessageOut.of(found)
