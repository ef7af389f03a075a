"""Rewards in the console: the catalogue with stock, limits, validity and redemptions;
creating and editing a reward with every field the API takes, its picture uploaded and
served by Treu itself (``treu.media``), topping up its stock, pausing and resuming it.

Everything goes through ``treu.rewards.catalogue`` — the API's service — in one unit
of work: a picture is stored in the same transaction as the reward that shows it, so a
refused reward leaves no orphan image. The list is four queries whatever its length
(the programmes, the rewards, the redemption counts grouped by reward, the tiers).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from treu.config import Settings
from treu.kit.text import N_
from treu.media.errors import ImageTooLarge, NotAnImage
from treu.media.service import MAX_BYTES, local_path, media, path_of
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.donations import donations
from treu.rewards.errors import RewardNotFound
from treu.rewards.models import Reward, RewardStatus, RewardType
from treu.rewards.schemas import RewardIn, RewardPatch
from treu.rewards.service import catalogue
from treu.web.admin import router
from treu.web.admin.catalogue_flow import (
    Translate,
    change_or_list,
    checked_form,
    field_errors,
    programme_choice,
    programme_or_first,
    save_or_redisplay,
)
from treu.web.admin.catalogue_forms import (
    GENERAL,
    Errors,
    FormError,
    Values,
    basis_points,
    int_text,
    local_text,
    local_time,
    minor_text,
    money_minor,
    percent_text,
    text_values,
    whole,
)
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for
from treu.web.security import check_csrf

ADMIN.link("/admin/rewards", N_("Rewards"), order=50, permission="programme.read")

KINDS: dict[str, str] = {
    RewardType.percent_discount.value: N_("Percentage discount"),
    RewardType.amount_discount.value: N_("Voucher (amount off)"),
    RewardType.free_product.value: N_("Free product"),
    RewardType.experience.value: N_("Experience (ticket)"),
    RewardType.donation.value: N_("Donation"),
    RewardType.wallet_credit.value: N_("Wallet credit"),
}
STATUSES: dict[str, str] = {
    RewardStatus.active.value: N_("active"),
    RewardStatus.paused.value: N_("paused"),
    RewardStatus.archived.value: N_("archived"),
}
FIELDS = [
    "programme", "code", "type", "status", "name_de", "name_en", "description_de",
    "description_en", "image_url", "points_cost", "valid_from", "valid_until", "min_tier",
    "min_membership_days", "stock", "per_member_limit", "coupon_valid_days", "min_order",
    "percent", "value", "currency", "sku", "product_name_de", "product_name_en",
    "event_starts_at", "event_ends_at", "event_location", "charity",
]  # fmt: skip
POLICIES = ("refund_on_cancel", "refund_on_expiry", "restore_on_return")
FIELD_OF_PATH = {
    "percent_bp": "percent",
    "value_minor": "value",
    "min_order_minor": "min_order",
    "stock": "stock",
    "eligibility.min_tier": "min_tier",
    "eligibility.min_membership_days": "min_membership_days",
    "event.starts_at": "event_starts_at",
    "event.ends_at": "event_ends_at",
    "event.location": "event_location",
    "name.de": "name_de",
    "name.en": "name_en",
    "description.de": "description_de",
    "description.en": "description_en",
    "product_name.de": "product_name_de",
    "product_name.en": "product_name_en",
}
NEEDS = re.compile(r"^a (\w+) reward (needs|takes no) (.+)$")


def _field_of(loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(p) for p in loc)
    return FIELD_OF_PATH.get(dotted, str(loc[0]) if loc else GENERAL)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@dataclass(frozen=True)
class Row:
    reward: Reward
    name: str
    image: str | None
    redemptions: int
    holding: int


def _name(text: dict[str, Any] | None, lang: str) -> str:
    text = text or {}
    return str(text.get(lang) or text.get("en") or text.get("de") or "")


# --- the list ------------------------------------------------------------------------------


def _list(
    request: Request,
    staff: Staff,
    slug: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    lang = language(request)
    with database(request).unit_of_work(write=False) as session:
        every, chosen = programme_choice(session, slug)
        rows: list[Row] = []
        tiers: dict[str, str] = {}
        if chosen is not None:
            items = catalogue.all(session, programme=chosen, include_archived=True)
            counts = catalogue.redemption_counts(session, [r.id for r in items])
            tiers = {
                code: _name(info.name, lang)
                for code, info in catalogue.tiers(session, chosen.id).items()
            }
            for reward in items:
                total, holding = counts.get(reward.id, (0, 0))
                rows.append(
                    Row(
                        reward,
                        _name(reward.name, lang),
                        local_path(reward.image_url),
                        total,
                        holding,
                    )
                )
        return render(
            request,
            "admin/rewards.html",
            status_code=status_code,
            timezone=chosen.timezone if chosen else "UTC",
            staff=staff,
            programmes=every,
            programme=chosen,
            rows=rows,
            tiers=tiers,
            kinds=KINDS,
            statuses=STATUSES,
            error=error,
            done=done,
        )


@router.get("/rewards")
def rewards_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    return _list(request, staff, programme, done=done or None)


# --- the form ------------------------------------------------------------------------------


def _values_of(reward: Reward, programme: Programme) -> Values:
    tz, cur = programme.timezone, programme.currency
    name, description = reward.name or {}, reward.description or {}
    product = reward.product_name or {}
    values: Values = {
        "programme": programme.slug,
        "code": reward.code,
        "type": reward.type,
        "status": reward.status,
        "name_de": name.get("de", ""),
        "name_en": name.get("en", ""),
        "description_de": description.get("de", ""),
        "description_en": description.get("en", ""),
        "image_url": reward.image_url or "",
        "points_cost": str(reward.points_cost),
        "valid_from": local_text(reward.valid_from, tz),
        "valid_until": local_text(reward.valid_until, tz),
        "min_tier": reward.min_tier or "",
        "min_membership_days": int_text(reward.min_membership_days),
        "stock": int_text(reward.stock_total),
        "per_member_limit": int_text(reward.per_member_limit),
        "coupon_valid_days": int_text(reward.coupon_valid_days),
        "min_order": minor_text(reward.min_order_minor, cur),
        "percent": percent_text(reward.percent_bp),
        "value": minor_text(reward.value_minor, reward.currency or cur),
        "currency": reward.currency or "",
        "sku": reward.sku or "",
        "product_name_de": product.get("de", ""),
        "product_name_en": product.get("en", ""),
        "event_starts_at": local_text(reward.event_starts_at, tz),
        "event_ends_at": local_text(reward.event_ends_at, tz),
        "event_location": reward.event_location or "",
        "charity": reward.charity_code or "",
    }
    for policy in POLICIES:
        values[policy] = "on" if getattr(reward, policy) else ""
    return values


def _blank(programme: Programme) -> Values:
    values: Values = dict.fromkeys(FIELDS, "")
    values.update(programme=programme.slug, type="amount_discount", status="active")
    values.update(refund_on_cancel="on", refund_on_expiry="", restore_on_return="on")
    return values


def _local(values: Values, *keys: str) -> dict[str, str]:
    return {lang: values[k] for lang, k in zip(("de", "en"), keys, strict=True) if values[k]}


def _document(values: Values, programme: Programme) -> dict[str, Any]:
    """The form as a ``RewardIn`` document (``FormError`` for a field of the wrong
    kind); empty fields are left out, as an API client would."""
    tz = programme.timezone
    currency = values["currency"].upper() or programme.currency
    doc: dict[str, Any] = {
        "code": values["code"],
        "type": values["type"],
        "status": values["status"] or "active",
        "name": _local(values, "name_de", "name_en"),
        "description": _local(values, "description_de", "description_en"),
        "image_url": values["image_url"] or None,
        "points_cost": whole(values, "points_cost"),
        "valid_from": local_time(values, "valid_from", tz),
        "valid_until": local_time(values, "valid_until", tz),
        "eligibility": {
            "min_tier": values["min_tier"] or None,
            "min_membership_days": whole(values, "min_membership_days"),
        },
        "stock": whole(values, "stock"),
        "per_member_limit": whole(values, "per_member_limit"),
        "coupon_valid_days": whole(values, "coupon_valid_days"),
        "min_order_minor": money_minor(values, "min_order", currency),
        "percent_bp": basis_points(values, "percent"),
        "value_minor": money_minor(values, "value", currency),
        "currency": values["currency"] or None,
        "sku": values["sku"] or None,
        "product_name": _local(values, "product_name_de", "product_name_en") or None,
        "charity": values["charity"] or None,
        "policies": {policy: values[policy] == "on" for policy in POLICIES},
    }
    starts = local_time(values, "event_starts_at", tz)
    ends = local_time(values, "event_ends_at", tz)
    if starts or ends or values["event_location"]:
        doc["event"] = {
            "starts_at": starts,
            "ends_at": ends,
            "location": values["event_location"] or None,
        }
    return {k: v for k, v in doc.items() if v is not None}


def _general(_: Any) -> Any:
    def place(message: str) -> tuple[str, str]:
        found = NEEDS.match(message)
        if found is None:
            return GENERAL, message
        first = found.group(3).split(", ")[0]
        field = {
            "percent_bp": "percent",
            "value_minor": "value",
            "event": "event_starts_at",
            "product_name": "product_name_en",
        }.get(first, first)
        if found.group(2) == "needs":
            return field, _("Required for this kind of reward.")
        return field, _("This kind of reward does not use it; leave it empty.")

    return place


def _form(
    request: Request,
    staff: Staff,
    session: Session,
    programme: Programme,
    values: Values,
    *,
    reward: Reward | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
    done: str | None = None,
) -> Response:
    lang = language(request)
    _ = translate_for(lang)
    if reward is not None:
        title = _("Edit reward") + ": " + (_name(reward.name, lang) or reward.code)
    else:
        title = _("New reward")
    return render(
        request,
        "admin/rewards_form.html",
        title=title,
        status_code=status_code,
        timezone=programme.timezone,
        staff=staff,
        programme=programme,
        reward=reward,
        image=local_path(reward.image_url) if reward else None,
        values=values,
        errors=errors or {},
        kinds=KINDS,
        statuses=STATUSES,
        tiers=[
            (code, _name(info.name, lang))
            for code, info in sorted(
                catalogue.tiers(session, programme.id).items(), key=lambda kv: kv[1].rank
            )
        ],
        charities=[
            (c.code, _name(c.name, lang))
            for c in donations.charities(session, programme_id=programme.id)
        ],
        max_image=MAX_BYTES // 1024,
        currency=programme.currency,
        stock_left=reward.stock_left if reward else None,
        done=done,
    )


async def _submitted(request: Request) -> tuple[FormData, Values, bytes | None]:
    form = await request.form(max_files=1, max_fields=60)
    values = text_values(form, FIELDS + list(POLICIES) + ["csrf", "remove_image"])
    upload = form.get("image")
    data: bytes | None = None
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_BYTES + 1)
        await upload.close()
    return form, values, data


def _store_image(
    session: Session, request: Request, staff: Staff, data: bytes | None
) -> str | None:
    """The picture uploaded with the form stored; its address for ``image_url``."""
    if data is None:
        return None
    stored = media.store(session, data=data, actor=f"staff:{staff.email}")
    return _settings(request).public_url.rstrip("/") + path_of(stored)


@router.get("/rewards/new")
def new_reward_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("rewards.write"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        chosen = programme_or_first(session, programme)
        if chosen is None:
            return RedirectResponse("/admin/rewards", status_code=303)
        return _form(request, staff, session, chosen, _blank(chosen))


@router.post("/rewards/new")
async def create_reward(
    request: Request, staff: Annotated[Staff, Depends(need("rewards.write"))]
) -> Response:
    _form_data, values, image = await _submitted(request)
    check_csrf(values["csrf"], staff.csrf)
    return await run_in_threadpool(_create, request, staff, values, image)


def _create(request: Request, staff: Staff, values: Values, image: bytes | None) -> Response:
    def write(session: Session) -> str:
        found = programmes.get(session, values["programme"])
        data = RewardIn.model_validate(_document(values, found))
        url = _store_image(session, request, staff, image)
        if url is not None:
            data = data.model_copy(update={"image_url": url})
        catalogue.create(session, programme=found, data=data, actor=f"staff:{staff.email}")
        return f"/admin/rewards?programme={found.slug}&done=created"

    def redisplay(session: Session, errors: Errors) -> Response:
        found = programmes.get(session, values["programme"])
        return _form(request, staff, session, found, values, errors=errors, status_code=422)

    return save_or_redisplay(request, write=write, redisplay=redisplay, errors=_errors)


def _errors(error: Exception, _: Translate) -> Errors:
    """Where the form shows ``error``: the picture's own errors at the picture."""
    if isinstance(error, NotAnImage):
        return {"image": _("This file is not a PNG, JPEG or WebP image.")}
    if isinstance(error, ImageTooLarge):
        return {
            "image": _(
                "The image is too large: at most {size} KB and 25 megapixels.",
                size=MAX_BYTES // 1024,
            )
        }
    return field_errors(
        error,
        _,
        field_of=lambda field: FIELD_OF_PATH.get(field, field),
        loc_of=_field_of,
        general=_general(_),
    )


def _owned(session: Session, reward_id: uuid.UUID) -> tuple[Reward, Programme]:
    reward = catalogue.get(session, reward_id)
    if reward.status == RewardStatus.archived.value:
        raise RewardNotFound(f"reward {reward_id} is archived")
    return reward, programmes.get(session, reward.programme_id)


@router.get("/rewards/{reward_id}")
def reward_page(
    request: Request,
    reward_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("programme.read"))],
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        reward, found = _owned(session, reward_id)
        return _form(
            request, staff, session, found, _values_of(reward, found), reward=reward,
            done=done or None,
        )  # fmt: skip


@router.post("/rewards/{reward_id}")
async def update_reward(
    request: Request,
    reward_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rewards.write"))],
) -> Response:
    _form_data, values, image = await _submitted(request)
    check_csrf(values["csrf"], staff.csrf)
    return await run_in_threadpool(_update, request, staff, reward_id, values, image)


def _update(
    request: Request, staff: Staff, reward_id: uuid.UUID, values: Values, image: bytes | None
) -> Response:
    def fixed(reward: Reward) -> Values:
        """What the form may not change, as the reward has it."""
        return values | {"code": reward.code, "type": reward.type, "status": reward.status}

    def write(session: Session) -> str:
        reward, found = _owned(session, reward_id)
        doc = _document(fixed(reward), found)
        if values["remove_image"] == "on":
            doc.pop("image_url", None)
        RewardIn.model_validate(doc)  # every field's error at once, as on creating
        url = _store_image(session, request, staff, image)
        if url is not None:
            doc["image_url"] = url
        changes = {k: doc.get(k) for k in RewardPatch.model_fields if k != "status"}
        if changes["stock"] == reward.stock_total:
            del changes["stock"]  # unchanged: no restock
        catalogue.update(
            session,
            programme=found,
            reward_id=reward.id,
            patch=RewardPatch.model_validate(changes),
            actor=f"staff:{staff.email}",
        )
        return f"/admin/rewards/{reward_id}?done=saved"

    def redisplay(session: Session, errors: Errors) -> Response:
        reward, found = _owned(session, reward_id)
        return _form(
            request, staff, session, found, fixed(reward), reward=reward, errors=errors,
            status_code=422,
        )  # fmt: skip

    return save_or_redisplay(request, write=write, redisplay=redisplay, errors=_errors)


@router.post("/rewards/{reward_id}/stock")
async def add_stock(
    request: Request,
    reward_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rewards.write"))],
) -> Response:
    values = await checked_form(request, staff, ["units"])
    return await run_in_threadpool(_add_stock, request, staff, reward_id, values)


def _add_stock(request: Request, staff: Staff, reward_id: uuid.UUID, values: Values) -> Response:
    def write(session: Session) -> str:
        reward, found = _owned(session, reward_id)
        units = whole(values, "units")
        if not units:
            raise FormError("units", N_("Enter the number of units to add."))
        catalogue.add_stock(
            session, programme=found, reward_id=reward.id, units=units,
            actor=f"staff:{staff.email}",
        )  # fmt: skip
        return f"/admin/rewards/{reward_id}?done=stock"

    def redisplay(session: Session, errors: Errors) -> Response:
        reward, found = _owned(session, reward_id)
        return _form(
            request, staff, session, found, _values_of(reward, found), reward=reward,
            errors=errors, status_code=422,
        )  # fmt: skip

    def at_units(error: Exception, _: Translate) -> Errors:
        """Every refusal is about the units (the form shows the reward as saved)."""
        return {"units": _(error.message) if isinstance(error, FormError) else str(error)}

    return save_or_redisplay(request, write=write, redisplay=redisplay, errors=at_units)


@router.post("/rewards/{reward_id}/status")
async def set_status(
    request: Request,
    reward_id: uuid.UUID,
    staff: Annotated[Staff, Depends(need("rewards.write"))],
) -> Response:
    values = await checked_form(request, staff, ["status"])
    return await run_in_threadpool(_set_status, request, staff, reward_id, values)


def _set_status(request: Request, staff: Staff, reward_id: uuid.UUID, values: Values) -> Response:
    wanted = values["status"]

    def change(session: Session, reward: Reward, found: Programme) -> None:
        if wanted not in (RewardStatus.active.value, RewardStatus.paused.value):
            raise FormError("status", N_("Choose one of the options."))
        catalogue.update(
            session, programme=found, reward_id=reward.id,
            patch=RewardPatch(status=wanted), actor=f"staff:{staff.email}",
        )  # fmt: skip

    return change_or_list(
        request,
        owned=lambda session: _owned(session, reward_id),
        change=change,
        listed=lambda slug, error: _list(request, staff, slug, status_code=422, error=error),
        page="/admin/rewards",
        done=wanted,
    )
