from __future__ import annotations

from treu.errors import Invalid, NotFound


class InsufficientPoints(Invalid):
    code = "insufficient_points"
    title = "Not enough points"


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class PostingNotFound(NotFound):
    code = "posting_not_found"
    title = "Posting not found"


class PostingNotRefundable(Invalid):
    code = "posting_not_refundable"
    title = "Only redemptions can be refunded"


class RefundExceedsPosting(Invalid):
    code = "refund_exceeds_posting"
    title = "More refunded than the posting took"
