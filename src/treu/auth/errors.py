from __future__ import annotations

from treu.errors import Forbidden, Invalid, NotFound, Unauthenticated


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"
    title = "Invalid API key"


class MissingScope(Forbidden):
    code = "missing_scope"
    title = "API key lacks a scope"


class UnknownScope(Invalid):
    code = "unknown_scope"
    title = "Unknown scope"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "API key not found"
