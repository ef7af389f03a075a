from __future__ import annotations

from treu.errors import Invalid, NotFound


class UnknownJourney(NotFound):
    code = "unknown_journey"
    title = "Unknown journey"


class InvalidJourney(Invalid):
    code = "invalid_journey"
    title = "Invalid journey settings"
