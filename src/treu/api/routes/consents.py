"""Consents (``/v1/members/{id}/consents``), a programme's messaging switches, and the
unsubscribe links of e-mails (``/u/{token}``, no login: the signed link is the proof)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from treu.api.deps import DB, Admin, AnyKey, MembersRead, MembersWrite, RequestedLang, get_settings
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.config import Settings
from treu.kit.lang import member_language
from treu.kit.time import utc_now
from treu.members.service import members
from treu.messaging.consents import consents, policy, read_unsubscribe_token
from treu.messaging.schemas import (
    ConsentsIn,
    ConsentsOut,
    MessagingSettingsIn,
    MessagingSettingsOut,
)
from treu.messaging.templates import render_page
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/members", tags=["consents"], responses=PROBLEM_RESPONSES)
settings_router = Router(prefix="/v1/programmes", tags=["programmes"], responses=PROBLEM_RESPONSES)
unsubscribe_router = Router(prefix="/u", include_in_schema=False)

NO_MEMBER: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}
NO_PROGRAMME: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such programme"}
}
AppSettings = Annotated[Settings, Depends(get_settings)]


def _out(session: Session, member_id: uuid.UUID) -> ConsentsOut:
    return ConsentsOut.of(
        member_id, consents.current(session, member_id), consents.history(session, member_id)
    )


@router.get("/{member_id}/consents", response_model=ConsentsOut, responses=NO_MEMBER)
def get_consents(member_id: uuid.UUID, db: DB, _key: MembersRead) -> ConsentsOut:
    """Each channel's state (null: never asked) and the history of grants and
    withdrawals, newest first."""
    with db.unit_of_work(write=False) as session:
        members.get(session, member_id)
        return _out(session, member_id)


@router.put("/{member_id}/consents", response_model=ConsentsOut, responses=NO_MEMBER)
def put_consents(member_id: uuid.UUID, data: ConsentsIn, db: DB, _key: MembersWrite) -> ConsentsOut:
    """Record what the member said, per channel (only the channels given). Every
    statement is kept with its source and wording version; the latest one counts.
    Marketing messages need ``granted: true``; transactional e-mail goes unless
    withdrawn (docs/email.md)."""
    with db.unit_of_work() as session:
        member = members.get(session, member_id)
        now = utc_now()
        for channel, given in data.changes().items():
            consents.record(
                session,
                member=member,
                channel=channel,
                granted=given.granted,
                source=given.source,
                wording=given.wording,
                now=now,
            )
        return _out(session, member_id)


@settings_router.get(
    "/{programme}/messaging", response_model=MessagingSettingsOut, responses=NO_PROGRAMME
)
def get_messaging(programme: str, db: DB, _key: AnyKey) -> MessagingSettingsOut:
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        allowed = policy.transactional_email(session, [found.id])[found.id]
        return MessagingSettingsOut(programme=found.slug, transactional_email=allowed)


@settings_router.put(
    "/{programme}/messaging", response_model=MessagingSettingsOut, responses=NO_PROGRAMME
)
def put_messaging(
    programme: str, data: MessagingSettingsIn, db: DB, _key: Admin
) -> MessagingSettingsOut:
    """Switch the programme's transactional e-mail on or off (admin scope)."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        row = policy.set(session, found.id, transactional_email=data.transactional_email)
        return MessagingSettingsOut(
            programme=found.slug, transactional_email=row.transactional_email
        )


@unsubscribe_router.get("/{token}", response_class=HTMLResponse)
def unsubscribe_page(
    token: str, request: Request, db: DB, settings: AppSettings, requested: RequestedLang
) -> HTMLResponse:
    """Asks before it withdraws: mail scanners follow links with GET, and must not
    unsubscribe anyone by doing so."""
    link = read_unsubscribe_token(settings.signing_key(), token)
    with db.unit_of_work(write=False) as session:
        member = members.get(session, link.member_id)
        programme = programmes.get(session, member.programme_id)
        lang = member_language(requested, member.language)
    page = render_page(
        "unsubscribe_page",
        {"programme_name": programme.name, "action_url": str(request.url.path)},
        lang,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@unsubscribe_router.post("/{token}", response_class=HTMLResponse)
def unsubscribe(
    token: str, db: DB, settings: AppSettings, requested: RequestedLang
) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058): the mail client POSTs
    ``List-Unsubscribe=One-Click`` here, or the member presses the page's button.
    Withdrawing twice records it once."""
    link = read_unsubscribe_token(settings.signing_key(), token)
    with db.unit_of_work() as session:
        member = members.get(session, link.member_id)
        programme = programmes.get(session, member.programme_id)
        state = consents.current(session, member.id)[link.channel.value]
        if state is None or state.granted:
            consents.record(
                session, member=member, channel=link.channel, granted=False, source="unsubscribe"
            )
        lang = member_language(requested, member.language)
    page = render_page("unsubscribed_page", {"programme_name": programme.name}, lang)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
