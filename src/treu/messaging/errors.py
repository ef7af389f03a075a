from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound, TreuError


class InvalidLink(TreuError):
    """A signed link (unsubscribe) that was not signed by this server, or was altered."""

    code = "invalid_link"
    http_status = 400
    title = "Invalid or damaged link"


class TemplateProblem(Invalid):
    """A template that does not compile, names a variable it is not given, or tries
    something the sandbox forbids; ``line`` is the template's line (1-based)."""

    code = "template_error"
    title = "Template error"

    def __init__(self, message: str, *, line: int | None, name: str | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        of = f"{name}, " if name else ""
        super().__init__(f"{of}{where}{message}", line=line, template=name)
        self.message = message
        self.line = line
        self.name = name


class MailNotFound(NotFound):
    code = "mail_not_found"
    title = "No such message in the development mailbox"


class TemplateNotFound(NotFound):
    code = "template_not_found"
    title = "No such template"


class TemplateExists(Conflict):
    code = "template_exists"
    title = "The programme has this template in this language already"


class InboxMessageNotFound(NotFound):
    code = "inbox_message_not_found"
    title = "No such message in the member's inbox"
