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
