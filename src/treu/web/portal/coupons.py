"""My coupons: the active ones first (code and QR code at hand), then those used,
expired or cancelled; one coupon's page with its code, its QR code, how long it is valid
and how to use it. Another member's coupon id is not found (404), not forbidden: the
portal does not confirm that it exists."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.kit.text import N_
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.programmes.service import programmes
from treu.rewards.coupons import coupons
from treu.rewards.errors import CouponNotFound
from treu.rewards.models import Coupon, CouponStatus
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render

ACTIVE = 100
PAST = 20

PORTAL.link("/portal/coupons", N_("Coupons"), order=40)


def _own(session: Session, member: Signed, coupon_id: uuid.UUID) -> Coupon:
    found = session.get(Coupon, coupon_id)
    if found is None or found.member_id != member.id:
        raise CouponNotFound(f"no coupon {coupon_id} of this member")
    return found


@router.get("/coupons")
def coupons_page(request: Request, member: Annotated[Signed, Depends(need_member)]) -> Response:
    lang = language(request)
    now = utc_now()
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        usable = (Coupon.status == CouponStatus.active.value) & (Coupon.expires_at > now)
        active = session.scalars(
            select(Coupon)
            .where(Coupon.member_id == member.id, usable)
            .order_by(Coupon.expires_at, Coupon.id)
            .limit(ACTIVE)
        ).all()
        past = session.scalars(
            select(Coupon)
            .where(Coupon.member_id == member.id, ~usable)
            .order_by(Coupon.issued_at.desc(), Coupon.id.desc())
            .limit(PAST)
        ).all()
        return render(
            request,
            "portal/coupons.html",
            timezone=timezone,
            member=member,
            active=[coupons.public(c, lang=lang, timezone=timezone) for c in active],
            past=[coupons.public(c, lang=lang, timezone=timezone) for c in past],
            now=now,
        )


@router.get("/coupons/{coupon_id}")
def coupon_page(
    request: Request, coupon_id: uuid.UUID, member: Annotated[Signed, Depends(need_member)]
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        timezone = programmes.get(session, member.programme_id).timezone
        coupon = coupons.public(_own(session, member, coupon_id), lang=lang, timezone=timezone)
        balance = ledger.balance(session, member_id=member.id, expiring_limit=0)
        return render(
            request,
            "portal/coupon.html",
            timezone=timezone,
            member=member,
            coupon=coupon,
            usable=coupon.status == CouponStatus.active and coupon.expires_at > utc_now(),
            balance=balance,
            new=request.query_params.get("new") == "1",
        )


@router.get("/coupons/{coupon_id}/qr.svg")
def coupon_qr(
    request: Request, coupon_id: uuid.UUID, member: Annotated[Signed, Depends(need_member)]
) -> Response:
    """The code as a QR code (drawn by segno, as the API's), for the till's scanner."""
    with database(request).unit_of_work(write=False) as session:
        code = _own(session, member, coupon_id).code
    return Response(
        coupons.qr_svg(code, scale=6),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )
