"""Serving Treu's own images (``/media/<id>/<hash>.<ext>``; see ``treu.media``).

The address carries the first digits of the content's hash, so the answer never
changes and is cached for a year (``immutable``); a wrong hash is a 404, not the
current picture. The content type is the one Treu wrote when it re-encoded the upload,
``nosniff`` forbids browsers to guess another, and a sandboxing CSP keeps the image
inert even when opened on its own. Public: the portal, apps and the web shop show
these images to anybody.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import Response

from treu.errors import NotFound
from treu.media.service import EXTENSIONS, media
from treu.web.routing import Router
from treu.web.security import WebRoute
from treu.web.signed import database

router = Router(prefix="/media", route_class=WebRoute, include_in_schema=False)


class MediaNotFound(NotFound):
    code = "media_not_found"
    title = "No such image"


@router.get("/{media_id}/{name}")
def image(request: Request, media_id: uuid.UUID, name: str) -> Response:
    digest, _, ext = name.partition(".")
    with database(request).unit_of_work(write=False) as session:
        item = media.get(session, media_id)
        if (
            item is None
            or len(digest) != 16
            or not item.sha256.startswith(digest)
            or EXTENSIONS.get(ext) != item.content_type
        ):
            raise MediaNotFound(f"no image {media_id}/{name}")
        data, content_type, etag = item.data, item.content_type, item.sha256
    return Response(
        content=bytes(data),
        media_type=content_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "ETag": f'"{etag}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": f'inline; filename="{digest}.{ext}"',
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )
