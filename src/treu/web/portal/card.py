"""The digital card: the card number as a QR code and a Code 128 barcode with the number
to read out, a full-screen view for the till (only the codes, large, black on white, no
script), and the card to keep: a signed Apple Wallet pass when the retailer configured
its certificate (``TREU_WALLET_*``), else a PNG card image."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from treu.config import Settings
from treu.errors import NotFound
from treu.kit.text import N_
from treu.ledger.service import ledger
from treu.members import card
from treu.members.service import members
from treu.messaging.channel import points_label
from treu.programmes.service import programmes
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render, translate_for
from treu.web.security import secure_headers

PORTAL.link("/portal/card", N_("Card"), order=20)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _codes(request: Request, signed: Signed, template: str) -> Response:
    _ = translate_for(language(request))
    with database(request).unit_of_work(write=False) as session:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
    title = _("Card number {number}", number=card.grouped(member.card_number))
    return render(
        request,
        template,
        member=signed,
        programme=programme,
        card_number=card.grouped(member.card_number),
        qr=card.qr_svg(member.card_number, title=title),
        barcode=card.code128_svg(member.card_number, title=title),
        wallet=_settings(request).wallet_ready(),
    )


@router.get("/card")
def card_page(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    return _codes(request, signed, "portal/card.html")


@router.get("/card/full")
def card_full(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    return _codes(request, signed, "portal/card_full.html")


def _filename(slug: str, suffix: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", slug.lower())[:40] + "-card." + suffix


@router.get("/card.png")
def card_image(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    with database(request).unit_of_work(write=False) as session:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
    name = " ".join(p for p in (member.first_name, member.last_name) if p) or None
    data = card.card_png(programme=programme.name, name=name, card_number=member.card_number)
    response = Response(
        data,
        media_type="image/png",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(programme.slug, "png")}"'
        },
    )
    return secure_headers(request, response)


@router.get("/card.pkpass")
def wallet_pass(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    settings = _settings(request)
    if not settings.wallet_ready():
        raise NotFound("this server has no Apple Wallet certificate (TREU_WALLET_CERT)")
    assert settings.wallet_cert
    assert settings.wallet_key
    assert settings.wallet_pass_type_id
    assert settings.wallet_team_id
    signer = card.PassSigner(
        certificate=settings.wallet_cert,
        key=settings.wallet_key,
        pass_type_id=settings.wallet_pass_type_id,
        team_id=settings.wallet_team_id,
        key_password=(
            settings.wallet_key_password.get_secret_value()
            if settings.wallet_key_password
            else None
        ),
        wwdr=settings.wallet_wwdr,
    )
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
        balance = ledger.balance(session, member_id=member.id, expiring_limit=0)
    name = " ".join(p for p in (member.first_name, member.last_name) if p) or None
    data = card.pkpass(
        signer,
        programme=programme.name,
        name=name,
        card_number=member.card_number,
        balance=balance.available,
        points_name=points_label(programme, lang, 2),
        serial=str(member.id),
    )
    response = Response(
        data,
        media_type="application/vnd.apple.pkpass",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(programme.slug, "pkpass")}"'
        },
    )
    return secure_headers(request, response)
