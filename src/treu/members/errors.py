from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound
from treu.errors import MemberClosed as MemberClosed


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "Member not found"


class IdentifierTaken(Conflict):
    code = "identifier_taken"
    title = "Identifier already in use"


class IdentifierRequired(Invalid):
    code = "identifier_required"
    title = "An identifier is required"
