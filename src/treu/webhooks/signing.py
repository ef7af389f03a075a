"""Standard Webhooks 1.0 signatures (https://www.standardwebhooks.com).

A receiver verifies ``webhook-signature`` — ``v1,<base64 HMAC-SHA256>`` of
``<webhook-id>.<webhook-timestamp>.<raw body>`` keyed with the base64-decoded part of the
secret after ``whsec_`` — and refuses a timestamp far from its clock (the libraries
allow five minutes), so a captured request cannot be replayed later. The id is the
delivery's and the same on every retry: receivers dedupe on it. The timestamp is the
attempt's: a retry is signed anew, with the secrets valid at that moment.

While a rotated secret is still valid the header carries two signatures, separated by a
space; a receiver accepts the request when any one of them verifies, so it can switch to
the new secret whenever it likes within that time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
"""The specification asks for 24 to 64 random bytes."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def message_id(delivery_id: uuid.UUID) -> str:
    """``webhook-id``: the delivery's id, stable across its retries and redeliveries."""
    return "msg_" + delivery_id.hex


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Sequence[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one signature per valid secret, newest first."""
    return " ".join(sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)


def headers(secrets_: Sequence[str], *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            secrets_, msg_id=msg_id, timestamp=timestamp, body=body
        ),
        "content-type": "application/json",
    }
