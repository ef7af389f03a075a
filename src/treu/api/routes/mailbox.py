"""The development mailbox (``/dev/mailbox``): what e-mail Treu would have sent, in
development mode without ``TREU_SMTP_HOST``. Registered in development mode only;
elsewhere these paths do not exist (404)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import HTMLResponse, Response

from treu.api.deps import DB
from treu.api.responses import JSONBody
from treu.messaging.mailbox import mailbox
from treu.messaging.schemas import MailOut
from treu.messaging.templates import render_page
from treu.web.routing import Router

BASE = "/dev/mailbox"
router = Router(prefix=BASE, include_in_schema=False)
Format = Annotated[Literal["html", "json"], Query(description="html (default) or json")]


@router.get("")
def list_mail(
    db: DB,
    format: Format = "html",
    to: Annotated[str | None, Query(description="Only messages to this address")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Newest first."""
    with db.unit_of_work(write=False) as session:
        mails = [MailOut.of(m) for m in mailbox.list(session, to=to, limit=limit)]
    if format == "json":
        return JSONBody([m.model_dump(mode="json") for m in mails])
    page = render_page(
        "dev_mailbox",
        {"base": BASE, "mail": None, "mails": [m.model_dump(mode="json") for m in mails]},
        None,
    )
    return HTMLResponse(page)


@router.get("/{mail_id}")
def read_mail(mail_id: uuid.UUID, db: DB, format: Format = "html") -> Response:
    with db.unit_of_work(write=False) as session:
        mail = MailOut.of(mailbox.get(session, mail_id))
    if format == "json":
        return JSONBody(mail.model_dump(mode="json"))
    page = render_page(
        "dev_mailbox", {"base": BASE, "mail": mail.model_dump(mode="json"), "mails": []}, None
    )
    return HTMLResponse(page)
