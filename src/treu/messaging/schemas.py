from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from treu.messaging.consents import ConsentState
from treu.messaging.models import ConsentChannel, DevMail


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: bool
    source: str = Field(
        default="api",
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="Where the member said so: api, portal, pos, app, import, …",
    )
    wording: str | None = Field(
        default=None,
        max_length=64,
        description="Version of the consent text the member agreed to, e.g. 2026-11",
    )


class ConsentsIn(BaseModel):
    """Only the channels that change; every one given is recorded (history)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": {"granted": True, "source": "pos", "wording": "2026-11"}}]
        },
    )

    email: ConsentIn | None = None
    sms: ConsentIn | None = None
    push: ConsentIn | None = None
    inbox: ConsentIn | None = None

    @model_validator(mode="after")
    def _some(self) -> ConsentsIn:
        if not self.changes():
            raise ValueError("name at least one channel: email, sms, push or inbox")
        return self

    def changes(self) -> dict[ConsentChannel, ConsentIn]:
        return {
            channel: given
            for channel in ConsentChannel
            if (given := getattr(self, channel.value)) is not None
        }


class ConsentOut(BaseModel):
    granted: bool
    source: str
    wording: str | None
    at: datetime


class ConsentRecordOut(ConsentOut):
    channel: ConsentChannel


CONSENTS_EXAMPLE: dict[str, Any] = {
    "member_id": "01a23ca7-2950-73cc-b57d-fae8edcc5f05",
    "email": {
        "granted": False,
        "source": "unsubscribe",
        "wording": None,
        "at": "2026-12-01T09:12:00Z",
    },
    "sms": None,
    "push": None,
    "inbox": None,
    "history": [
        {
            "channel": "email",
            "granted": False,
            "source": "unsubscribe",
            "wording": None,
            "at": "2026-12-01T09:12:00Z",
        },
        {
            "channel": "email",
            "granted": True,
            "source": "pos",
            "wording": "2026-11",
            "at": "2026-11-24T10:20:00Z",
        },
    ],
}


class ConsentsOut(BaseModel):
    """Each channel's current state (null: never asked) and the history, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [CONSENTS_EXAMPLE]})

    member_id: uuid.UUID
    email: ConsentOut | None
    sms: ConsentOut | None
    push: ConsentOut | None
    inbox: ConsentOut | None
    history: list[ConsentRecordOut]

    @classmethod
    def of(
        cls,
        member_id: uuid.UUID,
        current: dict[str, ConsentState | None],
        history: list[ConsentState],
    ) -> ConsentsOut:
        def out(state: ConsentState | None) -> ConsentOut | None:
            if state is None:
                return None
            return ConsentOut(
                granted=state.granted, source=state.source, wording=state.wording, at=state.at
            )

        return cls(
            member_id=member_id,
            email=out(current.get("email")),
            sms=out(current.get("sms")),
            push=out(current.get("push")),
            inbox=out(current.get("inbox")),
            history=[
                ConsentRecordOut(
                    channel=ConsentChannel(s.channel),
                    granted=s.granted,
                    source=s.source,
                    wording=s.wording,
                    at=s.at,
                )
                for s in history
            ],
        )


class MessagingSettingsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"transactional_email": False}]}
    )

    transactional_email: bool = Field(
        description="Send welcome, expiry, coupon and upgrade e-mails (to members who "
        "have not withdrawn e-mail consent)"
    )


class MessagingSettingsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"programme": "demo", "transactional_email": True},
            ]
        }
    )

    programme: str
    transactional_email: bool


class MailOut(BaseModel):
    id: uuid.UUID
    delivery_id: uuid.UUID
    member_id: uuid.UUID | None
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, Any]
    sent_at: datetime

    @classmethod
    def of(cls, mail: DevMail) -> MailOut:
        return cls(
            id=mail.id,
            delivery_id=mail.delivery_id,
            member_id=mail.member_id,
            to=mail.recipient,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            headers=mail.headers,
            sent_at=mail.sent_at,
        )
