"""The money side of points: pay with points, the e-wallet and charity donations.

Every state change takes an ``Idempotency-Key`` header: a retry with the same key and
body answers 200 with the first result and changes nothing; the same key with another
body is ``409 idempotency_conflict``.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from treu.api.deps import DB, Admin, AnyKey, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.errors import Invalid
from treu.kit.pagination import InvalidCursor
from treu.members.service import members
from treu.programmes.service import programmes
from treu.rewards.donations import charity_out, donations, localised
from treu.rewards.payments import payments
from treu.rewards.schemas import (
    CharityOut,
    DonationOut,
    PaymentRefundOut,
    PointPaymentDetail,
    PointPaymentOut,
    WalletDebitOut,
    WalletEntryOut,
    WalletRefundOut,
)
from treu.rewards.wallet import entry_out, wallet
from treu.web.routing import Router

router = Router(tags=["payments"], responses=PROBLEM_RESPONSES)

Pay = Annotated[Principal, Depends(require("events:write|members:write"))]
"""The till and the web shop (``events:write``) or an app acting for the member."""
Look = Annotated[Principal, Depends(require("events:write|members:read"))]

IdempotencyKey = Annotated[
    str,
    Header(
        min_length=1,
        max_length=200,
        description="Required. The same key and body answer the first result (200) "
        "and change nothing; the same key with another body is 409.",
    ),
]


def _responses(not_found: str, **more: str) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "Replay of an earlier request with the same Idempotency-Key"},
        404: {"model": Problem, "description": not_found},
        409: {"model": Problem, "description": "Idempotency-Key reused for another request"},
    }
    for status_code, text in more.items():
        out[int(status_code.removeprefix("s"))] = {"model": Problem, "description": text}
    return out


class Money(BaseModel):
    @field_validator("currency", check_fields=False)
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


# --- pay with points ------------------------------------------------------------------


class PointPaymentIn(Money):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"order_id": "pos-4711-0001", "amount_minor": 1157, "currency": "EUR"},
                {
                    "order_id": "web-100234",
                    "amount_minor": 4990,
                    "currency": "EUR",
                    "partial": True,
                },
            ]
        },
    )

    order_id: str = Field(min_length=1, max_length=100, description="Your order or receipt id")
    amount_minor: int = Field(gt=0, le=10**12, description="The amount to pay, minor units")
    currency: str = Field(min_length=3, max_length=3)
    partial: bool = Field(
        default=False,
        description="Pay as much as the balance covers (else the points must cover it all)",
    )


class RefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount_minor": 500}, {}]}
    )

    amount_minor: int | None = Field(
        default=None, gt=0, le=10**12, description="Omit to refund all that is not refunded yet"
    )


@router.post(
    "/v1/members/{member_id}/point-payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PointPaymentOut,
    responses=_responses("No such member"),
)
def pay_with_points(
    member_id: uuid.UUID,
    data: PointPaymentIn,
    db: DB,
    key: Pay,
    idempotency_key: IdempotencyKey,
    response: Response,
) -> PointPaymentOut:
    """Pay (part of) an order with points at the programme's point value. Points are
    burnt earliest expiry first; the member never pays more points than needed, and
    the covered amount is what those points are worth (`insufficient_points` when the
    balance cannot cover the amount and `partial` is false)."""
    with db.unit_of_work() as session:
        done = payments.pay(
            session,
            member_id=member_id,
            key=idempotency_key,
            order_id=data.order_id,
            amount_minor=data.amount_minor,
            currency=data.currency,
            partial=data.partial,
            actor=key.actor,
        )
    response.status_code = done.http_status
    return done.result


@router.get(
    "/v1/point-payments/{payment_id}",
    response_model=PointPaymentDetail,
    responses={404: {"model": Problem, "description": "No such payment"}},
)
def get_point_payment(payment_id: uuid.UUID, db: DB, _key: Look) -> PointPaymentDetail:
    """A points payment with what has been refunded of it."""
    with db.unit_of_work(write=False) as session:
        return payments.get(session, payment_id)


@router.post(
    "/v1/point-payments/{payment_id}/refund",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRefundOut,
    responses=_responses("No such payment"),
)
def refund_point_payment(
    payment_id: uuid.UUID,
    data: RefundIn,
    db: DB,
    key: Pay,
    idempotency_key: IdempotencyKey,
    response: Response,
) -> PaymentRefundOut:
    """Refund a points payment, whole or in part by amount (a returned or cancelled
    order: the shop calls this for the part it pays back in points). The points go back
    to the lots they were paid from; points whose lot has expired meanwhile expire at
    once. Partial refunds add up to exactly the points paid."""
    with db.unit_of_work() as session:
        done = payments.refund(
            session,
            payment_id=payment_id,
            key=idempotency_key,
            amount_minor=data.amount_minor,
            actor=key.actor,
        )
    response.status_code = done.http_status
    return done.result


# --- wallet ---------------------------------------------------------------------------


class WalletOut(BaseModel):
    member_id: uuid.UUID
    currency: str
    balance_minor: int
    entries: list[WalletEntryOut] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as ?cursor= for older entries")


class WalletDebitIn(Money):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"order_id": "pos-4711-0001", "amount_minor": 500, "currency": "EUR"}]
        },
    )

    order_id: str = Field(min_length=1, max_length=100)
    amount_minor: int = Field(gt=0, le=10**12)
    currency: str = Field(min_length=3, max_length=3)
    partial: bool = Field(default=False, description="Take as much as the wallet holds")


@router.get(
    "/v1/members/{member_id}/wallet",
    response_model=WalletOut,
    responses={404: {"model": Problem, "description": "No such member"}},
)
def get_wallet(
    member_id: uuid.UUID,
    db: DB,
    _key: Look,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> WalletOut:
    """The member's wallet credit and its entries, newest first."""
    with db.unit_of_work(write=False) as session:
        members.get(session, member_id)
        balance = wallet.balance(session, member_id=member_id)
        try:
            page = wallet.entries(session, member_id=member_id, limit=limit, cursor=cursor)
        except (InvalidCursor, ValueError, KeyError) as exc:
            raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc
        return WalletOut(
            member_id=member_id,
            currency=balance.currency,
            balance_minor=balance.balance_minor,
            entries=[entry_out(e) for e in page.items],
            next_cursor=page.next_cursor,
        )


@router.post(
    "/v1/members/{member_id}/wallet/debits",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletDebitOut,
    responses=_responses("No such member"),
)
def debit_wallet(
    member_id: uuid.UUID,
    data: WalletDebitIn,
    db: DB,
    key: Pay,
    idempotency_key: IdempotencyKey,
    response: Response,
) -> WalletDebitOut:
    """Pay (part of) an order from the wallet. The balance never goes below zero
    (`insufficient_wallet_balance`; with `partial`, as much as it holds)."""
    with db.unit_of_work() as session:
        done = wallet.debit(
            session,
            member_id=member_id,
            key=idempotency_key,
            order_id=data.order_id,
            amount_minor=data.amount_minor,
            currency=data.currency,
            partial=data.partial,
            actor=key.actor,
        )
    response.status_code = done.http_status
    return done.result


@router.post(
    "/v1/wallet/debits/{debit_id}/refund",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletRefundOut,
    responses=_responses("No such debit"),
)
def refund_wallet_debit(
    debit_id: uuid.UUID,
    data: RefundIn,
    db: DB,
    key: Pay,
    idempotency_key: IdempotencyKey,
    response: Response,
) -> WalletRefundOut:
    """Give back (part of) a wallet debit, e.g. for a returned order. Never more than
    was debited, over all refunds of the debit."""
    with db.unit_of_work() as session:
        done = wallet.refund(
            session,
            debit_id=debit_id,
            key=idempotency_key,
            amount_minor=data.amount_minor,
            actor=key.actor,
        )
    response.status_code = done.http_status
    return done.result


# --- charities and donations ----------------------------------------------------------

Localised = dict[Literal["de", "en"], Annotated[str, Field(min_length=1, max_length=200)]]


class CharityIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "tafel",
                    "name": {
                        "de": "Tafel Deutschland e.V.",
                        "en": "Tafel Deutschland (food banks)",
                    },
                    "description": {
                        "de": "Lebensmittel retten, Menschen helfen",
                        "en": "Rescuing food, helping people",
                    },
                    "url": "https://www.tafel.de",
                }
            ]
        },
    )

    code: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: Localised = Field(min_length=1)
    description: Localised | None = None
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    active: bool = True


class CharityPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    name: Localised | None = Field(default=None, min_length=1)
    description: Localised | None = None
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    active: bool | None = None


class CharityList(BaseModel):
    items: list[CharityOut]


class DonationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"charity": "tafel", "points": 500}]}
    )

    charity: str = Field(min_length=1, max_length=64, description="The charity's code")
    points: int = Field(gt=0, le=10**9)


class CharityTotalOut(BaseModel):
    code: str
    name: str
    donations: int
    donors: int = Field(description="Distinct members")
    points: int
    value_minor: int


class DonationSummaryOut(BaseModel):
    programme: str
    currency: str
    from_: date | None = Field(alias="from")
    to: date | None
    items: list[CharityTotalOut] = Field(description="Every charity, largest value first")
    total_points: int
    total_value_minor: int


@router.get(
    "/v1/programmes/{programme}/charities",
    response_model=CharityList,
    responses={404: {"model": Problem, "description": "No such programme"}},
)
def list_charities(
    programme: str,
    db: DB,
    _key: AnyKey,
    active: Annotated[bool | None, Query(description="Only active (true) charities")] = None,
) -> CharityList:
    """The charities members can donate points to."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        rows = donations.charities(session, programme_id=found.id, active_only=bool(active))
        return CharityList(items=[charity_out(c) for c in rows])


@router.post(
    "/v1/programmes/{programme}/charities",
    status_code=status.HTTP_201_CREATED,
    response_model=CharityOut,
    responses={
        404: {"model": Problem, "description": "No such programme"},
        409: {"model": Problem, "description": "A charity with this code exists"},
    },
)
def add_charity(programme: str, data: CharityIn, db: DB, key: Admin) -> CharityOut:
    """Add a charity (admin). Audit-logged."""
    from treu.audit.service import audit

    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        charity = donations.add_charity(
            session,
            programme_id=found.id,
            code=data.code,
            name={str(k): v for k, v in data.name.items()},
            description={str(k): v for k, v in (data.description or {}).items()},
            url=data.url,
            active=data.active,
        )
        audit.record(
            session,
            actor=key.actor,
            action="charity.create",
            subject_type="charity",
            subject_id=str(charity.id),
            programme_id=found.id,
            data={"code": charity.code},
        )
        return charity_out(charity)


@router.patch(
    "/v1/programmes/{programme}/charities/{code}",
    response_model=CharityOut,
    responses={404: {"model": Problem, "description": "No such programme or charity"}},
)
def update_charity(programme: str, code: str, data: CharityPatch, db: DB, key: Admin) -> CharityOut:
    """Rename, relink or (de)activate a charity (admin). An inactive charity keeps its
    donations and totals but takes no new ones. Audit-logged."""
    from treu.audit.service import audit

    changes = data.model_dump(exclude_unset=True)
    if changes.get("name", True) is None or changes.get("active", True) is None:
        raise Invalid("name and active cannot be null")
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        charity = donations.update_charity(
            session,
            programme_id=found.id,
            code=code,
            changes={k: dict(v) if isinstance(v, dict) else v for k, v in changes.items()},
        )
        audit.record(
            session,
            actor=key.actor,
            action="charity.update",
            subject_type="charity",
            subject_id=str(charity.id),
            programme_id=found.id,
            data={"code": code, "changed": sorted(changes)},
        )
        return charity_out(charity)


@router.post(
    "/v1/members/{member_id}/donations",
    status_code=status.HTTP_201_CREATED,
    response_model=DonationOut,
    responses=_responses("No such member or charity"),
)
def donate_points(
    member_id: uuid.UUID,
    data: DonationIn,
    db: DB,
    key: Pay,
    idempotency_key: IdempotencyKey,
    response: Response,
) -> DonationOut:
    """Donate points to one of the programme's charities: the points are burnt
    (earliest expiry first) and the donation is recorded with what they were worth."""
    with db.unit_of_work() as session:
        done = donations.donate(
            session,
            member_id=member_id,
            key=idempotency_key,
            charity=data.charity,
            points=data.points,
            actor=key.actor,
        )
    response.status_code = done.http_status
    return done.result


@router.get(
    "/v1/programmes/{programme}/donations/summary",
    response_model=DonationSummaryOut,
    response_model_by_alias=True,
    responses={404: {"model": Problem, "description": "No such programme"}},
)
def donation_summary(
    programme: str,
    db: DB,
    _key: Admin,
    from_: Annotated[
        date | None, Query(alias="from", description="First day, programme time zone")
    ] = None,
    to: Annotated[date | None, Query(description="Last day (included)")] = None,
    lang: Annotated[Literal["de", "en"], Query(description="Language of names")] = "en",
) -> DonationSummaryOut:
    """Per charity: donations, distinct donors, points and their value for a period
    (admin) — what the retailer owes each charity."""
    if from_ is not None and to is not None and to < from_:
        raise Invalid("'to' lies before 'from'")
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        totals = donations.summary(session, programme=found, start=from_, end=to)
        return DonationSummaryOut.model_validate(
            {
                "programme": found.slug,
                "currency": found.currency,
                "from": from_,
                "to": to,
                "items": [
                    CharityTotalOut(
                        code=t.code,
                        name=localised(t.name, lang),
                        donations=t.donations,
                        donors=t.donors,
                        points=t.points,
                        value_minor=t.value_minor,
                    )
                    for t in totals
                ],
                "total_points": sum(t.points for t in totals),
                "total_value_minor": sum(t.value_minor for t in totals),
            }
        )
