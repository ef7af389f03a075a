"""The API's JSON answers, encoded by orjson (see ``treu.kit.jsons``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from treu.kit import jsons


class JSONBody(JSONResponse):
    """``JSONResponse`` with orjson: the same document, several times faster to encode."""

    def render(self, content: Any) -> bytes:
        return jsons.dumps(content)
