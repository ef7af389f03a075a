from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from treu.kit.ids import luhn_valid
from treu.kit.time import utc_now
from treu.members.models import Channel, MemberStatus

Language = Literal["de", "en"]

EARLIEST_ZONE_OFFSET = timedelta(hours=14)
"""UTC+14 (Kiribati's Line Islands), where a calendar day begins first."""


def normalise_phone(value: str) -> str:
    """E.164 (+4915112345678). Numbers must carry their country code."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("phone must be in international format, e.g. +4915112345678") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("phone is not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_card(value: str) -> str:
    digits = value.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 32):
        raise ValueError("card_number must be 8 to 32 digits")
    if not luhn_valid(digits):
        raise ValueError("card_number is not a valid card number (Luhn check failed)")
    return digits


Email = Annotated[EmailStr, AfterValidator(str.lower)]
"""An email address, compared case-insensitively (stored lower-case)."""
Phone = Annotated[str, AfterValidator(normalise_phone), Field(examples=["+4915112345678"])]


class _Identifiers(BaseModel):
    email: Email | None = None
    phone: Phone | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=128)


class _Profile(BaseModel):
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    birthday: date | None = None
    language: Language | None = None
    attributes: dict[str, Any] | None = Field(
        default=None, description='Free-form profile data, e.g. {"size": "M"}'
    )

    @field_validator("birthday")
    @classmethod
    def _past(cls, value: date | None) -> date | None:
        # The profile has no time zone of its own, so "today" is the latest calendar date
        # anywhere on Earth (UTC+14): a birthday that is today where the member lives is
        # never refused, whatever the server's or the programme's zone.
        latest_today = (utc_now() + EARLIEST_ZONE_OFFSET).date()
        if value is not None and (value.year < 1900 or value > latest_today):
            raise ValueError("birthday must be a date in the past")
        return value


class MemberCreate(_Identifiers, _Profile):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"programme": "demo", "email": "anna@example.com", "language": "de"}]
        },
    )

    programme: str = Field(description="Programme slug or id")
    card_number: str | None = Field(
        default=None, description="Existing card number to keep; generated when omitted"
    )
    channel: Channel = Channel.other
    enrolled_at: datetime | None = Field(
        default=None, description="When importing existing members: their original enrolment"
    )

    @field_validator("card_number")
    @classmethod
    def _card(cls, value: str | None) -> str | None:
        return normalise_card(value) if value else value

    @model_validator(mode="after")
    def _one_identifier(self) -> MemberCreate:
        if not (self.email or self.phone or self.external_id or self.card_number):
            raise ValueError(
                "at least one identifier is required: email, phone, card_number or external_id"
            )
        return self


class MemberUpdate(_Identifiers, _Profile):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"birthday": "1990-05-17", "attributes": {"size": "M"}}]},
    )

    status: MemberStatus | None = None


_REF_FIELDS = ("member_id", "email", "phone", "card_number", "external_id")


class MemberRef(BaseModel):
    """Exactly one way to name a member in an event."""

    model_config = ConfigDict(extra="forbid")

    member_id: uuid.UUID | None = None
    email: Email | None = None
    phone: Phone | None = None
    card_number: str | None = None
    external_id: str | None = None

    @field_validator("card_number")
    @classmethod
    def _card(cls, value: str | None) -> str | None:
        return value.replace(" ", "").replace("-", "") if value else value

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberRef:
        # Every event names its member: ``model_dump`` here and in ``kind`` (asked four
        # times per event) was a tenth of a batch's validation and member look-up, and a
        # private attribute caching the kind cost more to set up and read than the loop.
        values = self.__dict__
        if sum(1 for k in _REF_FIELDS if values[k] is not None) != 1:
            raise ValueError(
                "name the member by exactly one of "
                "member_id, email, phone, card_number, external_id"
            )
        return self

    @property
    def kind(self) -> str:
        values = self.__dict__
        for k in _REF_FIELDS:
            if values[k] is not None:
                return k
        raise AssertionError("validated: exactly one is given")

    @property
    def value(self) -> str:
        return str(self.__dict__[self.kind])


assert tuple(MemberRef.model_fields) == _REF_FIELDS


MEMBER_EXAMPLE: dict[str, Any] = {
    "id": "01a23ca7-2950-73cc-b57d-fae8edcc5f05",
    "programme": "demo",
    "status": "active",
    "card_number": "9276140813116672",
    "email": "anna@example.com",
    "phone": None,
    "external_id": None,
    "first_name": None,
    "last_name": None,
    "birthday": None,
    "language": "de",
    "attributes": {},
    "channel": "other",
    "enrolled_at": "2026-11-24T10:20:00Z",
    "created_at": "2026-11-24T10:20:00Z",
    "updated_at": "2026-11-24T10:20:00Z",
}


class MemberOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [MEMBER_EXAMPLE]})

    id: uuid.UUID
    programme: str
    status: MemberStatus
    card_number: str
    email: str | None
    phone: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    birthday: date | None
    language: str | None
    attributes: dict[str, Any]
    channel: str
    enrolled_at: datetime
    created_at: datetime
    updated_at: datetime
