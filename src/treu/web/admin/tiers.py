"""Tiers in the console: the programme's ladder with thresholds, multipliers and
benefits, how many members hold each tier (one grouped query), and — for roles with
``tiers.write`` — adding a tier and changing one, through the tiers service the API uses
(thresholds must rise with the rank; members are re-evaluated by the next run of
``tiers.reevaluate``).

Thresholds of a spend ladder are typed in the currency's major units (``1200`` or
``1200,50`` for €1,200.50) and stored in minor units like everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from treu.errors import TreuError
from treu.kit.money import currency_exponent, format_rate
from treu.kit.text import N_
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.tiers.models import Tier
from treu.tiers.schemas import TierCreate, TierPatch
from treu.tiers.service import tiers
from treu.tiers.texts import quantity
from treu.web.admin import router
from treu.web.admin.catalogue_forms import message_of
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for
from treu.web.security import check_csrf

ADMIN.link("/admin/tiers", N_("Tiers"), order=40, permission="programme.read")

Short = Annotated[str, Form(max_length=200)]
Long = Annotated[str, Form(max_length=8000)]


@dataclass
class TierRow:
    tier: Tier
    name: str
    threshold: str
    multiplier: Decimal
    benefits: list[str]
    members: int


def _name(value: dict[str, Any] | None, lang: str) -> str:
    if not value:
        return ""
    return str(value.get(lang) or value.get("en") or "")


def _threshold_text(programme: Programme, value: int) -> str:
    """The threshold as the form shows it: major units for spend."""
    if programme.tier_metric != "spend":
        return str(value)
    exponent = currency_exponent(programme.currency)
    return format(Decimal(value).scaleb(-exponent), "f")


def _threshold(programme: Programme, text: str) -> int | None:
    cleaned = text.strip().replace(" ", "")
    if programme.tier_metric == "spend":
        cleaned = cleaned.replace(",", ".")
        try:
            minor = Decimal(cleaned).scaleb(currency_exponent(programme.currency))
        except InvalidOperation:
            return None
        return int(minor) if minor == minor.to_integral_value() else None
    return int(cleaned) if cleaned.isdigit() else None


@router.get("/tiers")
def tiers_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        every = list(session.scalars(select(Programme).order_by(Programme.slug)))
        chosen = next((p for p in every if p.slug == programme), every[0] if every else None)
        rows: list[TierRow] = []
        without = 0
        settings = None
        if chosen is not None:
            settings = programmes.tier_settings(chosen)
            counts = tiers.members_per_tier(session, chosen)
            without = counts.get(None, 0)
            for tier in tiers.all(session, chosen):
                rows.append(
                    TierRow(
                        tier,
                        _name(tier.name, lang),
                        quantity(
                            chosen.tier_metric,
                            tier.threshold,
                            currency=chosen.currency,
                            points_name=chosen.points_name,
                            lang=lang,
                        ),
                        tier.multiplier.normalize(),
                        [_name(b, lang) for b in tier.benefits],
                        counts.get(tier.code, 0),
                    )
                )
        return render(
            request,
            "admin/tiers.html",
            staff=staff,
            programmes=every,
            chosen=chosen,
            settings=settings,
            rows=rows,
            without=without,
            done=request.query_params.get("done"),
        )


# --------------------------------------------------------------------------- editing


def _form_of(programme: Programme, tier: Tier | None) -> dict[str, Any]:
    if tier is None:
        return {
            "code": "", "rank": "", "name_en": "", "name_de": "", "threshold": "",
            "multiplier": "1", "benefits": "", "flags": "", "purchasable": False,
        }  # fmt: skip
    return {
        "code": tier.code,
        "rank": str(tier.rank),
        "name_en": tier.name.get("en", ""),
        "name_de": tier.name.get("de") or "",
        "threshold": _threshold_text(programme, tier.threshold),
        "multiplier": format_rate(tier.multiplier),
        "benefits": "\n".join(
            b.get("en", "") + (f" | {b['de']}" if b.get("de") else "") for b in tier.benefits
        ),
        "flags": ", ".join(tier.flags),
        "purchasable": tier.purchasable,
    }


def _editor(
    request: Request,
    staff: Staff,
    programme: Programme,
    tier: Tier | None,
    form: dict[str, Any],
    *,
    problems: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin/tiers_editor.html",
        status_code=status_code,
        staff=staff,
        programme=programme,
        tier=tier,
        form=form,
        problems=problems or {},
        unit={
            "spend": programme.currency,
            "points": translate_for(language(request))("points"),
            "purchases": translate_for(language(request))("purchases"),
        }.get(programme.tier_metric, programme.tier_metric),
    )


def _find(request: Request, slug: str, code: str | None) -> tuple[Programme, Tier | None]:
    with database(request).unit_of_work(write=False) as session:
        programme = programmes.get(session, slug)
        tier = None
        if code is not None:
            tier = next((t for t in tiers.all(session, programme) if t.code == code), None)
            if tier is None:
                from treu.tiers.errors import TierNotFound

                raise TierNotFound(f"no tier {code!r} in programme {slug!r}")
        return programme, tier


@router.get("/tiers/{slug}/new")
def new_tier(
    request: Request, slug: str, staff: Annotated[Staff, Depends(need("tiers.write"))]
) -> Response:
    programme, _ = _find(request, slug, None)
    return _editor(request, staff, programme, None, _form_of(programme, None))


@router.get("/tiers/{slug}/{code}")
def edit_tier(
    request: Request, slug: str, code: str, staff: Annotated[Staff, Depends(need("tiers.write"))]
) -> Response:
    programme, tier = _find(request, slug, code)
    return _editor(request, staff, programme, tier, _form_of(programme, tier))


def _data(programme: Programme, form: dict[str, Any], problems: dict[str, str]) -> dict[str, Any]:
    benefits = []
    for line in str(form["benefits"]).splitlines():
        if not line.strip():
            continue
        en, _, de = line.partition("|")
        benefit = {"en": en.strip()}
        if de.strip():
            benefit["de"] = de.strip()
        benefits.append(benefit)
    name = {"en": form["name_en"].strip()}
    if form["name_de"].strip():
        name["de"] = form["name_de"].strip()
    threshold = _threshold(programme, form["threshold"])
    if threshold is None:
        problems["threshold"] = "not a number"
    return {
        "rank": form["rank"].strip(),
        "name": name,
        "threshold": threshold if threshold is not None else 0,
        "multiplier": form["multiplier"].strip().replace(",", ".") or "1",
        "benefits": benefits,
        "flags": [f.strip() for f in str(form["flags"]).split(",") if f.strip()],
        "purchasable": bool(form["purchasable"]),
    }


def _validated(
    model: type[BaseModel],
    data: dict[str, Any],
    problems: dict[str, str],
    _: Callable[..., str],
) -> Any | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            field = str(loc[0]) if loc else "form"
            if field == "name":
                field = "name_en" if len(loc) < 2 or loc[1] == "en" else "name_de"
            problems[field] = (problems.get(field, "") + " " + message_of(error, _)).strip()
        return None


@router.post("/tiers/{slug}/{code}")
def save_tier(
    request: Request,
    slug: str,
    code: str,
    staff: Annotated[Staff, Depends(need("tiers.write"))],
    csrf: Short,
    rank: Short = "",
    name_en: Short = "",
    name_de: Short = "",
    threshold: Short = "",
    multiplier: Short = "1",
    benefits: Long = "",
    flags: Long = "",
    purchasable: Short = "",
    new_code: Annotated[str, Form(alias="code", max_length=64)] = "",
) -> Response:
    """``code`` ``new`` adds a tier (with the code from the form); any other changes it."""
    check_csrf(csrf, staff.csrf)
    programme, tier = _find(request, slug, None if code == "new" else code)
    form = {
        "code": new_code if tier is None else tier.code,
        "rank": rank, "name_en": name_en, "name_de": name_de, "threshold": threshold,
        "multiplier": multiplier, "benefits": benefits, "flags": flags,
        "purchasable": bool(purchasable),
    }  # fmt: skip
    problems: dict[str, str] = {}
    _ = translate_for(language(request))
    data = _data(programme, form, problems)
    if tier is None:
        checked = _validated(TierCreate, {"code": new_code.strip(), **data}, problems, _)
    else:
        checked = _validated(TierPatch, data, problems, _)
    if checked is None or problems:
        return _editor(request, staff, programme, tier, form, problems=problems, status_code=422)
    actor = f"staff:{staff.email}"
    try:
        with database(request).unit_of_work() as session:
            attached = programmes.get(session, programme.id)
            if tier is None:
                tiers.create(session, programme=attached, data=checked, actor=actor)
            else:
                tiers.update(
                    session, programme=attached, code=tier.code, patch=checked, actor=actor
                )
    except TreuError as error:
        field = str(error.extra.get("field") or "form")
        return _editor(
            request, staff, programme, tier, form,
            problems={field if field in form else "form": error.detail}, status_code=422,
        )  # fmt: skip
    return RedirectResponse(f"/admin/tiers?programme={programme.slug}&done=saved", status_code=303)
