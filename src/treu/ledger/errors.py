from __future__ import annotations

from treu.errors import Invalid, NotFound


class InsufficientPoints(Invalid):
    code = "insufficient_points"
    title = "Not enough points"


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"
