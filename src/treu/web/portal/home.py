"""The portal's home: available and pending points (the figures of
``GET /v1/members/{id}/balance``), the next expiry, the tier with what is missing for the
next one (``tiers.status``, as ``GET /v1/members/{id}/tier``), and how to earn more.

A fixed number of queries whatever the member's history (a test counts them): the
balance is the account row plus the open lots, the tier one aggregate, the recommendations
(``treu.insights.offers``) the member's recent purchase lines."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from treu.insights.offers import offers
from treu.kit.text import N_
from treu.kit.time import local_date, utc_now
from treu.ledger.service import ledger
from treu.messaging.channel import points_label
from treu.programmes.earning import how_to_earn
from treu.tiers.service import tiers
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render

PORTAL.link("/portal", N_("Overview"), order=10)


@router.get("")
def home(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        member, programme, state = tiers.member_with_programme(session, signed.id)
        balance = ledger.balance(session, member_id=member.id, expiring_limit=1)
        tier = tiers.status(session, member=member, lang=lang, programme=programme, state=state)
        expiry = None
        if balance.expiring:
            first = balance.expiring[0]
            expiry = (
                first.points,
                points_label(programme, lang, first.points),
                local_date(first.expires_at, programme.timezone),
            )
        progress = None
        if tier.next is not None:
            progress = (tier.value, tier.value + tier.next.missing)
        earn = how_to_earn(
            programme,
            lang=lang,
            multiplier=tier.benefits.multiplier if tier.benefits is not None else None,
            tier=tier.tier.name if tier.tier is not None else None,
        )
        recommended = offers(  # the member's lines (one statement); the rest is cached
            session,
            member=member,
            programme=programme,
            available_points=balance.available,
            k=3,
            lang=lang,
            now=utc_now(),
            tier=tier.tier.code if tier.tier is not None else None,
        )
        return render(
            request,
            "portal/home.html",
            timezone=programme.timezone,
            member=signed,
            programme=programme,
            balance=balance,
            points_name=points_label(programme, lang, 2),
            pending_label=points_label(programme, lang, balance.pending),
            expiry=expiry,
            tier=tier,
            progress=progress,
            earn=earn,
            recommended=recommended,
        )
