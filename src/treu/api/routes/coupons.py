"""Coupons at the till and in the web shop: check one against a cart, use it for an
order, show it, print it as a QR code."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from treu.api.deps import DB, CheckoutKey, EventsWrite, RequestedLang
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.checkout.service import EXAMPLE_CART, CartIn, check_cart_currency, checkout
from treu.kit.lang import member_language
from treu.members.service import members
from treu.programmes.errors import ProgrammeNotFound
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.coupons import Cart, coupon_cart, coupons
from treu.rewards.schemas import CouponOut, CouponUseOut, CouponValidationOut
from treu.web.routing import Router

router = Router(prefix="/v1/coupons", tags=["coupons"], responses=PROBLEM_RESPONSES)

CODE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "`coupon_not_found` (in this programme)"},
    422: {
        "model": Problem,
        "description": "`invalid_coupon_code`: not a code Treu issues (a typo: the check "
        "character does not match), or a validation error",
    },
}


class CouponValidateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"code": "7KQM-XH3R-T9PW-BC2E", "cart": EXAMPLE_CART, "lang": "de"}]
        },
    )

    code: str = Field(min_length=1, max_length=64, description="As typed or scanned")
    cart: CartIn = Field(description="The same cart as for POST /v1/checkout/evaluate")
    lang: Literal["en", "de"] = "en"


class CouponRedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "7KQM-XH3R-T9PW-BC2E",
                    "order_id": "pos-4711-0001",
                    "programme": "demo",
                    "cart": EXAMPLE_CART,
                }
            ]
        },
    )

    code: str = Field(min_length=1, max_length=64)
    order_id: str = Field(
        min_length=1,
        max_length=200,
        description="Your order id: the id of the purchase event you will send for it",
    )
    programme: str = Field(min_length=1, max_length=64)
    cart: CartIn | None = Field(
        default=None, description="Needed for discounts; a ticket may be admitted without"
    )
    lang: Literal["en", "de"] = "en"

    @model_validator(mode="after")
    def _same_programme(self) -> CouponRedeemIn:
        if self.cart is not None and self.cart.programme != self.programme:
            raise ValueError("cart.programme must be the programme of the request")
        return self


def _programme(session: Session, slug: str) -> Programme:
    found = programmes.cached_by_slug(session, {slug}).get(slug)
    if found is None:
        raise ProgrammeNotFound(f"no programme {slug!r}")
    return found


def to_cart(session: Session, cart: CartIn, programme: Programme) -> Cart:
    """The coupon rules' view of a checkout cart; its member resolved to an id (the same
    checks as ``POST /v1/checkout/evaluate``)."""
    check_cart_currency(cart, programme)
    member = checkout.resolve_member(session, programme, cart.member)
    return coupon_cart(cart.currency, cart.lines, member.id if member is not None else None)


@router.post("/validate", response_model=CouponValidationOut, responses=CODE_PROBLEMS)
def validate(data: CouponValidateIn, db: DB, _key: CheckoutKey) -> CouponValidationOut:
    """Is this coupon applicable to this cart, for this member, and what does it take
    off? Read-only. `applicable: false` comes with `reasons` (`coupon_used`,
    `coupon_expired`, `min_order_value`, `product_not_in_cart`, `other_member`, …).
    Percent discounts are rounded half-up to whole cents and never exceed the cart."""
    with db.unit_of_work(write=False) as session:
        programme = _programme(session, data.cart.programme)
        cart = to_cart(session, data.cart, programme)
        return coupons.validate(
            session, code=data.code, programme=programme, cart=cart, lang=data.lang
        )


@router.post(
    "/redeem",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponUseOut,
    responses=CODE_PROBLEMS
    | {
        200: {"description": "The coupon was used for this order already: the same answer"},
        409: {"model": Problem, "description": "`coupon_already_used` for another order"},
        422: {
            "model": Problem,
            "description": "`coupon_not_applicable` (see `reasons`), `invalid_coupon_code`",
        },
    },
)
def redeem(data: CouponRedeemIn, db: DB, key: EventsWrite) -> Response:
    """Use the coupon for an order (events:write). A coupon is used once: of two tills
    racing, one wins and the other gets `coupon_already_used`. Sending the same order
    again answers 200 with the same body. If the order is later returned in full, the
    coupon becomes usable again (where the reward says so)."""
    with db.unit_of_work() as session:
        programme = _programme(session, data.programme)
        cart = to_cart(session, data.cart, programme) if data.cart is not None else None
        done = coupons.redeem(
            session,
            code=data.code,
            order_id=data.order_id,
            programme=programme,
            cart=cart,
            actor=key.actor,
            lang=data.lang,
        )
    # Encoded here, once: the answer is the declared model already (a hot path).
    return Response(
        done.result.model_dump_json(),
        status_code=done.http_status,
        media_type="application/json",
    )


@router.get("/{code}", response_model=CouponOut, responses=CODE_PROBLEMS)
def get_coupon(
    code: str,
    db: DB,
    _key: CheckoutKey,
    requested: RequestedLang,
) -> CouponOut:
    """A coupon by its code (any format: case, spaces and dashes do not matter)."""
    with db.unit_of_work(write=False) as session:
        coupon = coupons.by_code(session, code)
        lang = member_language(requested, members.get(session, coupon.member_id).language)
        timezone = programmes.get(session, coupon.programme_id).timezone
        return coupons.public(coupon, lang=lang, timezone=timezone)


@router.get(
    "/{code}/qr.svg",
    response_class=Response,
    responses=CODE_PROBLEMS
    | {200: {"content": {"image/svg+xml": {}}, "description": "The QR code (SVG)"}},
)
def coupon_qr(
    code: str,
    db: DB,
    _key: CheckoutKey,
    scale: Annotated[int, Query(ge=1, le=40, description="Pixels per module")] = 4,
) -> Response:
    """The coupon's code as a QR code, for the app's wallet screen or a printed voucher.
    It encodes the printed form (`7KQM-XH3R-T9PW-BC2E`), which every endpoint accepts."""
    with db.unit_of_work(write=False) as session:
        coupon = coupons.by_code(session, code)
    return Response(
        coupons.qr_svg(coupon.code, scale=scale),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )
