from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "Member not found"


class IdentifierTaken(Conflict):
    code = "identifier_taken"
    title = "Identifier already in use"


class IdentifierRequired(Invalid):
    code = "identifier_required"
    title = "An identifier is required"


class MemberClosed(Invalid):
    code = "member_closed"
    title = "Member is closed"
