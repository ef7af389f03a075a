from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound, Unauthenticated


class StaffNotFound(NotFound):
    code = "staff_not_found"
    title = "No such staff account"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "A staff account with this e-mail exists"


class SignInFailed(Unauthenticated):
    """One error for an unknown address, a wrong password, a wrong second factor and a
    disabled account: the answer tells an attacker nothing about which it was."""

    code = "sign_in_failed"
    title = "E-mail, password or code not accepted"


class WeakPassword(Invalid):
    code = "weak_password"
    title = "The password does not meet the policy"


class InvalidRole(Invalid):
    code = "invalid_role"
    title = "Unknown role"


class TotpNotStarted(Invalid):
    code = "totp_not_started"
    title = "Start setting up the second factor first"
