"""Member 360: everything about one member on one page — profile, balance, tier, ledger
with its explanations, tier history, coupons, redemptions, messages sent, staff notes, an
open deletion request — and the two things support does there: a note, and a goodwill
adjustment with its mandatory reason (audit-logged under the staff member's name).

A fixed number of queries whatever the member's history: each list is one query with a
limit (a test counts them)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Uuid, bindparam, select

from treu.db.base import Named
from treu.delivery.models import Delivery, DeliveryStatus
from treu.errors import TreuError
from treu.kit.codes import format_code
from treu.kit.ids import new_id
from treu.kit.text import N_
from treu.ledger.adjustments import Adjustment, adjustments
from treu.ledger.explain import render as explain
from treu.ledger.models import Posting
from treu.ledger.service import ledger
from treu.members.models import MemberNote, MemberStatus
from treu.members.notes import notes
from treu.members.service import members
from treu.messaging.channel import NAME as EMAIL
from treu.messaging.inbox import NAME as INBOX
from treu.privacy.models import DeletionRequest, DeletionStatus
from treu.rewards.models import Coupon, CouponStatus, Redemption, RedemptionStatus
from treu.tiers.service import tiers
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.render import language, render
from treu.web.security import check_csrf

LIST = 10
LEDGER = 20
NOTES = 20
MAX_ADJUSTMENT = 1_000_000

LABELS: dict[str, dict[str, str]] = {
    "member": {
        MemberStatus.active.value: N_("active"),
        MemberStatus.blocked.value: N_("blocked"),
        MemberStatus.closed.value: N_("closed"),
    },
    "coupon": {
        CouponStatus.active.value: N_("valid"),
        CouponStatus.used.value: N_("used"),
        CouponStatus.expired.value: N_("expired"),
        CouponStatus.cancelled.value: N_("cancelled"),
    },
    "redemption": {
        RedemptionStatus.redeemed.value: N_("redeemed"),
        RedemptionStatus.cancelled.value: N_("cancelled"),
        RedemptionStatus.expired.value: N_("expired unused"),
    },
    "delivery": {
        DeliveryStatus.pending.value: N_("waiting"),
        DeliveryStatus.failed.value: N_("failed, will be retried"),
        DeliveryStatus.delivered.value: N_("delivered"),
        DeliveryStatus.dead.value: N_("given up"),
    },
    "channel": {EMAIL: N_("e-mail"), INBOX: N_("portal inbox")},
}
"""The words the page shows for stored states (translated), by what they describe; a
value not listed here is shown as stored."""


def _member_id() -> Any:
    return bindparam("member_id", type_=Uuid())


# The page's short lists, each one prebuilt statement read as named tuples (``Named``):
# as ORM queries, these five small reads were a quarter of the page's CPU.
_POSTINGS = Named(
    "PostingRow",
    lambda: (
        select(
            Posting.created_at,
            Posting.kind,
            Posting.points,
            Posting.details,
            Posting.reason,
            Posting.actor,
        )
        .where(Posting.member_id == _member_id())
        .order_by(Posting.id.desc())
        .limit(LEDGER)
    ),
)
"""The ledger's newest postings, as ``ledger.history`` orders them (time-ordered ids)."""
_COUPONS = Named(
    "CouponRow",
    lambda: (
        select(Coupon.code, Coupon.terms, Coupon.kind, Coupon.status, Coupon.expires_at)
        .where(Coupon.member_id == _member_id())
        .order_by(Coupon.issued_at.desc())
        .limit(LIST)
    ),
)
_REDEMPTIONS = Named(
    "RedemptionRow",
    lambda: (
        select(Redemption.created_at, Redemption.reward, Redemption.points, Redemption.status)
        .where(Redemption.member_id == _member_id())
        .order_by(Redemption.created_at.desc())
        .limit(LIST)
    ),
)
_MESSAGES = Named(
    "MessageRow",
    lambda: (
        select(Delivery.created_at, Delivery.channel, Delivery.event_type, Delivery.status)
        .where(Delivery.member_id == _member_id(), Delivery.channel != "webhook")
        .order_by(Delivery.id.desc())
        .limit(LIST)
    ),
)
_NOTES = Named(
    "NoteRow",
    lambda: (
        select(MemberNote.text, MemberNote.author, MemberNote.created_at)
        .where(MemberNote.member_id == _member_id())
        .order_by(MemberNote.created_at.desc(), MemberNote.id.desc())
        .limit(NOTES)
    ),
)
_DELETION = Named(
    "DeletionRow",
    lambda: (
        select(DeletionRequest.requested_at, DeletionRequest.source)
        .where(
            DeletionRequest.member_id == _member_id(),
            DeletionRequest.status == DeletionStatus.open.value,
        )
        .limit(1)
    ),
)


def _page(
    request: Request,
    staff: Staff,
    member_id: uuid.UUID,
    *,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        member, programme, state = tiers.member_with_programme(session, member_id)
        balance = ledger.balance(session, member_id=member_id)
        tier = tiers.status(session, member=member, lang=lang, programme=programme, state=state)
        history = tiers.recent_history(session, member_id=member_id, limit=LIST, lang=lang)
        # The page's six lists, in one round trip.
        postings, coupons, redeemed, messages, written, deletion = Named.together(
            session.connection(),
            *(
                read.call(member_id=member_id)
                for read in (_POSTINGS, _COUPONS, _REDEMPTIONS, _MESSAGES, _NOTES, _DELETION)
            ),
        )
        ledger_rows = [
            (p.created_at, p.kind, p.points, explain(p.details, lang), p.reason, p.actor)
            for p in postings
        ]
        return render(
            request,
            "admin/member.html",
            status_code=status_code,
            timezone=programme.timezone,
            staff=staff,
            member=member,
            programme=programme,
            balance=balance,
            tier=tier,
            tier_history=history,
            ledger=ledger_rows,
            coupons=[(c, format_code(c.code)) for c in coupons],
            redemptions=redeemed,
            messages=messages,
            notes=written,
            deletion=deletion[0] if deletion else None,
            error=error,
            done=done,
            adjust_key=str(new_id()),
            labels=LABELS,
        )


@router.get("/members/{member_id}")
def member_page(
    request: Request,
    member_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("members.read"))],
) -> Response:
    return _page(request, staff, member_id, done=request.query_params.get("done"))


@router.post("/members/{member_id}/notes")
def add_note(
    request: Request,
    member_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("members.note"))],
    csrf: Annotated[str, Form(max_length=100)],
    text: Annotated[str, Form(max_length=4000)],
) -> Response:
    check_csrf(csrf, staff.csrf)
    try:
        with database(request).unit_of_work() as session:
            members.get(session, member_id)
            notes.add(session, member_id=member_id, author=staff.email, text=text)
    except TreuError as error:
        return _page(request, staff, member_id, status_code=422, error=error.detail)
    return RedirectResponse(f"/admin/members/{member_id}?done=note", status_code=303)


@router.post("/members/{member_id}/adjust")
def adjust(
    request: Request,
    member_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("members.adjust"))],
    csrf: Annotated[str, Form(max_length=100)],
    points: Annotated[int, Form(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT)],
    reason: Annotated[str, Form(max_length=500)],
    key: Annotated[str, Form(max_length=100)],
) -> Response:
    """A goodwill credit or a correction. ``key`` comes with the form, so sending it twice
    (a double click, a reload) posts once."""
    check_csrf(csrf, staff.csrf)
    if not reason.strip():
        return _page(request, staff, member_id, status_code=422, error="reason")
    if points == 0:
        return _page(request, staff, member_id, status_code=422, error="points")
    try:
        with database(request).unit_of_work() as session:
            member = members.get(session, member_id)
            adjustments.adjust(
                session,
                member=member,
                adjustment=Adjustment(points=points, reason=reason.strip(), key=f"console:{key}"),
                actor=f"staff:{staff.email}",
            )
    except TreuError as error:
        return _page(request, staff, member_id, status_code=422, error=error.detail)
    return RedirectResponse(f"/admin/members/{member_id}?done=adjusted", status_code=303)
