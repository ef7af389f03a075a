"""Signatures by the Standard Webhooks specification, checked with its reference
library (``standardwebhooks``)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from treu.kit.time import utc_now
from treu.outbox.events import TYPES
from treu.webhooks import signing
from treu.webhooks.service import event_types


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second
    assert signing.secret_key(first) == base64.b64decode(first[6:])


def test_the_library_verifies_what_treu_signs() -> None:
    secret = signing.new_secret()
    body = b'{"type":"points.earned","timestamp":"2026-12-06T10:00:00Z","data":{"points":5}}'
    msg_id = signing.message_id(uuid.uuid4())
    now = int(utc_now().timestamp())
    headers = signing.headers([secret], msg_id=msg_id, timestamp=now, body=body)
    assert headers["webhook-id"] == msg_id
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {
        "type": "points.earned",
        "timestamp": "2026-12-06T10:00:00Z",
        "data": {"points": 5},
    }
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(signing.new_secret()).verify(body, headers)
    # the library's own signature is Treu's
    assert (
        Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, UTC), body)
        == (headers["webhook-signature"])
    )


def test_two_secrets_make_two_signatures_each_accepted() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b"{}"
    now = int(utc_now().timestamp())
    headers = signing.headers([new, old], msg_id="msg_1", timestamp=now, body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_the_message_id_is_the_delivery_id() -> None:
    delivery = uuid.UUID("01938a7f-0b2c-7d4e-8f60-718293a4b5c6")
    assert signing.message_id(delivery) == "msg_01938a7f0b2c7d4e8f60718293a4b5c6"


def test_every_outbox_type_can_be_subscribed_to_and_campaign_messages_too() -> None:
    assert set(event_types()) == {*TYPES, "campaign.message"}
    assert "points.earned" in event_types()
