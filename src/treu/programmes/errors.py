from __future__ import annotations

from treu.errors import Conflict, NotFound


class ProgrammeNotFound(NotFound):
    code = "programme_not_found"
    title = "Programme not found"


class ProgrammeExists(Conflict):
    code = "programme_exists"
    title = "Programme already exists"
