"""Results that cross a package boundary in one shape, whichever package made them.

``Keyed`` lives here, below every domain package, because more than one of them answers
requests made with an idempotency key: the rewards package (redemptions, coupon use,
points payments, the e-wallet, donations) and the ledger (manual adjustments). One type
means every entry point tells a replay from a first answer the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

Answer = TypeVar("Answer")


@dataclass(frozen=True, slots=True)
class Keyed(Generic[Answer]):
    """The answer to a request made with an idempotency key: the first time
    (``replayed`` false; the API says 201 Created) or, for a retry with the same key
    and request, the first answer again (``replayed``; 200), read back from what was
    stored the first time into the same type."""

    result: Answer
    replayed: bool = False

    @property
    def http_status(self) -> int:
        """201 Created, or 200 for a replay (as ``TreuError.http_status``: what the
        API answers, decided where the outcome is known)."""
        return 200 if self.replayed else 201
