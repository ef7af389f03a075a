from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from treu.messaging.consents import ConsentState
from treu.messaging.models import ConsentChannel, DevMail, InboxMessage, MessageTemplate


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


# --- stored templates --------------------------------------------------------------------

_TEMPLATE_EXAMPLE: dict[str, Any] = {
    "programme": "demo",
    "key": "welcome",
    "lang": "de",
    "subject": "Willkommen, {{ first_name }}!",
    "text": "Hallo {{ first_name }},\n\ndein Kontostand: {{ balance }} {{ balance_label }}.",
    "html": "<p>Hallo {{ first_name }},</p><p>dein Kontostand: {{ balance }}.</p>",
}


class TemplateParts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=2000, description="Jinja2; one line")
    text: str = Field(min_length=1, max_length=100_000, description="Jinja2: the text body")
    html: str = Field(min_length=1, max_length=200_000, description="Jinja2: the HTML body")


class TemplateIn(TemplateParts):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_TEMPLATE_EXAMPLE]})

    programme: str = Field(description="Slug or id")
    key: str = Field(
        min_length=1,
        max_length=64,
        description="The message it words: welcome, points_expiring, coupon_issued, "
        "tier_upgraded, …",
    )
    lang: Literal["de", "en"]


class TemplateOut(BaseModel):
    id: uuid.UUID
    programme_id: uuid.UUID
    key: str
    lang: str
    subject: str
    text: str
    html: str
    version: int
    updated_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MessageTemplate) -> TemplateOut:
        return cls(
            id=row.id,
            programme_id=row.programme_id,
            key=row.key,
            lang=row.lang,
            subject=row.subject,
            text=row.text,
            html=row.html,
            version=row.version,
            updated_by=row.updated_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class TemplateList(BaseModel):
    items: list[TemplateOut]
    next_cursor: str | None


class TemplateVariable(BaseModel):
    name: str
    description: str


class TemplateVariables(BaseModel):
    keys: list[str] = Field(description="The messages a template can word")
    variables: list[TemplateVariable]
    filters: list[str] = Field(description="number, money('EUR') (minor units), date")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: uuid.UUID


class PreviewOut(BaseModel):
    member_id: uuid.UUID
    lang: str
    subject: str
    text: str
    html: str


# --- the in-app inbox --------------------------------------------------------------------


class InboxMessageOut(BaseModel):
    id: uuid.UUID
    event_type: str
    title: str
    text: str
    html: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, row: InboxMessage) -> InboxMessageOut:
        return cls(
            id=row.id,
            event_type=row.event_type,
            title=row.title,
            text=row.body_text,
            html=row.body_html,
            created_at=row.created_at,
            read_at=row.read_at,
        )


class InboxOut(BaseModel):
    member_id: uuid.UUID
    unread: int = Field(description="Unread messages in the whole inbox")
    items: list[InboxMessageOut]
    next_cursor: str | None


class InboxReadAll(BaseModel):
    member_id: uuid.UUID
    marked: int = Field(description="How many were unread")
    unread: int
