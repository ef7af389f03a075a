"""The audit log in the console (admins): who did what to which record, newest first,
filtered by actor, action, subject and date range, paged by key (a later page costs what
the first does), each entry with its details."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from treu.audit.service import AuditFilter, audit
from treu.errors import TreuError
from treu.kit.text import N_
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import render

ADMIN.link("/admin/audit", N_("Audit log"), order=110, permission="audit.read")

PAGE = 50
Text = Annotated[str, Query(max_length=200)]


def _day(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


def _shown(value: Any) -> str:
    """A detail as people read it: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@router.get("/audit")
def audit_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("audit.read"))],
    actor: Text = "",
    action: Text = "",
    subject: Text = "",
    since: Text = "",
    until: Text = "",
    cursor: Text = "",
) -> Response:
    filters = {"actor": actor, "action": action, "subject": subject, "since": since, "until": until}
    error = None
    entries: list[tuple[Any, list[tuple[str, str]]]] = []
    next_cursor = None
    try:
        first, last = _day(since), _day(until)
    except ValueError:
        error, first, last = "date", None, None
    if error is None:
        where = AuditFilter(
            actor=actor or None,
            action=action or None,
            subject=subject or None,
            since=datetime.combine(first, time(), UTC) if first else None,
            until=datetime.combine(last + timedelta(days=1), time(), UTC) if last else None,
        )
        try:
            with database(request).unit_of_work(write=False) as session:
                rows, next_cursor = audit.search(
                    session, where=where, limit=PAGE, cursor=cursor or None
                )
                entries = [
                    (row, [(key, _shown(value)) for key, value in sorted(row.data.items())])
                    for row in rows
                ]
        except TreuError as failed:
            error = failed.detail
    kept = {key: value for key, value in filters.items() if value}
    return render(
        request,
        "admin/audit.html",
        status_code=422 if error else 200,
        staff=staff,
        filters=filters,
        entries=entries,
        error=error,
        cursor=cursor,
        newest=f"/admin/audit?{urlencode(kept)}" if kept else "/admin/audit",
        older=f"/admin/audit?{urlencode({**kept, 'cursor': next_cursor})}" if next_cursor else None,
    )
