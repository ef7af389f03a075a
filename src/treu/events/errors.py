from __future__ import annotations

from treu.errors import IdempotencyConflict as IdempotencyConflict
from treu.errors import Invalid


class OriginalEventNotFound(Invalid):
    code = "original_event_not_found"
    title = "Original purchase not found"


class ReturnExceedsPurchase(Invalid):
    code = "return_exceeds_purchase"
    title = "More returned than bought"


class CurrencyMismatch(Invalid):
    code = "currency_mismatch"
    title = "Currency differs from the programme's"


class EventInFuture(Invalid):
    code = "event_in_future"
    title = "Event lies in the future"


class MemberMismatch(Invalid):
    code = "member_mismatch"
    title = "Return names another member than the purchase"
