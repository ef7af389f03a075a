from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class RuleNotFound(NotFound):
    code = "rule_not_found"
    title = "Rule not found"


class StaleRevision(Conflict):
    code = "stale_revision"
    title = "The rule was changed meanwhile"


class UnknownTrigger(Invalid):
    code = "unknown_trigger"
    title = "Unknown event type"


class NothingToPublish(Conflict):
    code = "nothing_to_publish"
    title = "The draft equals the published version"


class BudgetRace(Exception):
    """An optimistic unit of work met a budget at its edge, or lost a race for its last
    points (``Usage.settle``): roll back and process again with the budget rows locked
    (``ingest_with_retry`` does). Not a user's error: never leaves the ingest."""
