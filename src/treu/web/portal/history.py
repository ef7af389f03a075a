"""My points history: the member's postings newest first, each explained in the page's
language (``treu.ledger.explain``) and marked pending (with the day its points become
available) or available; "older" pages follow on the time-ordered posting id.

A fixed number of queries whatever the history's length: the balance (two) and one
statement per page (``ledger.statement``, a test counts them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from treu.errors import Invalid
from treu.kit.pagination import InvalidCursor
from treu.kit.text import N_
from treu.ledger.explain import render as explain
from treu.ledger.service import ledger
from treu.programmes.service import programmes
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render

PAGE = 20

PORTAL.link("/portal/history", N_("History"), order=20)


@router.get("/history")
def history_page(
    request: Request,
    member: Annotated[Signed, Depends(need_member)],
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        programme = programmes.get(session, member.programme_id)
        balance = ledger.balance(session, member_id=member.id, expiring_limit=1)
        try:
            page = ledger.statement(session, member_id=member.id, limit=PAGE, cursor=before)
        except (InvalidCursor, ValueError) as exc:
            raise Invalid("this page of the history does not exist", field="before") from exc
        lines = [
            (line.posting, explain(line.posting.details, lang), line.pending_until)
            for line in page.items
        ]
        return render(
            request,
            "portal/history.html",
            timezone=programme.timezone,
            member=member,
            balance=balance,
            lines=lines,
            older=page.next_cursor,
            first_page=before is None,
        )
