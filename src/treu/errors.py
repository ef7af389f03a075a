"""The Treu error tree. Every error a user can cause is a ``TreuError`` with a stable
``code`` (part of the public API contract) and the HTTP status the API answers with.
The CLI prints the message and exits non-zero; the API renders RFC 9457 problem+json.

    TreuError
    ├── NotFound                  404  (programme_not_found, member_not_found, ...)
    ├── Conflict                  409  (identifier_taken, ...)
    │   └── IdempotencyConflict   409  idempotency_conflict
    ├── Invalid                   422  (validation_error, unknown_currency, ...)
    │   ├── InsufficientPoints    422  insufficient_points
    │   └── MemberClosed          422  member_closed
    ├── Unauthenticated           401  unauthenticated
    ├── Forbidden                 403  forbidden
    ├── PayloadTooLarge           413  payload_too_large
    └── Busy                      503  busy (a lock could not be taken in time)

Feature packages subclass these in their own ``errors.py``. Two leaves live here instead,
because packages on different layers raise them and a lower package may not import a
higher one's errors: ``IdempotencyConflict`` (event ingestion, and the ledger's manual
adjustments) and ``MemberClosed`` (the ledger, and the packages above the members
package). ``treu.events.errors`` and ``treu.members.errors`` export them as before.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TreuError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    title: ClassVar[str] = "Request failed"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(TreuError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class Conflict(TreuError):
    code = "conflict"
    http_status = 409
    title = "Conflict"


class Invalid(TreuError):
    code = "validation_error"
    http_status = 422
    title = "Invalid request"


class Unauthenticated(TreuError):
    code = "unauthenticated"
    http_status = 401
    title = "Authentication required"


class Forbidden(TreuError):
    code = "forbidden"
    http_status = 403
    title = "Forbidden"


class PayloadTooLarge(TreuError):
    code = "payload_too_large"
    http_status = 413
    title = "Request body too large"


class Busy(TreuError):
    code = "busy"
    http_status = 503
    title = "Try again"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    title = "Event id reused with a different payload"


class MemberClosed(Invalid):
    code = "member_closed"
    title = "Member is closed"
