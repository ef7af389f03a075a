"""Storing an uploaded image (``media.store``) and finding it again (``media.get``).

What the browser sent is never stored as it came: Pillow must recognise it as a PNG,
JPEG or WebP by its content (the file name and the declared type count for nothing, so
a script or SVG dressed up as ``photo.png`` is refused), its pixel count is bounded
before anything is decoded (no decompression bomb), and the picture is drawn into a new
file of the same format. The new file carries no metadata — EXIF with the camera's GPS
position, XMP, comments, text chunks, ICC profiles — and nothing appended after the
image (a "polyglot" file that is also HTML loses its second half). The orientation EXIF
asked for is applied to the pixels first, so a phone photo stays upright.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.db.base import by_id
from treu.media.errors import ImageTooLarge, NotAnImage
from treu.media.models import Media

MAX_BYTES = 1024 * 1024
"""What an upload may weigh (1 MiB)."""
MAX_PIXELS = 25_000_000
"""Width x height an image may have (a 1 MiB file can decode to gigabytes)."""
FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
EXTENSIONS = {ext: content_type for content_type, ext in FORMATS.values()}
JPEG_QUALITY = 88
PATH = re.compile(
    r"/media/(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"
    r"(?P<hash>[0-9a-f]{16})\.(?P<ext>png|jpg|webp)$"
)


def path_of(item: Media) -> str:
    """``/media/<id>/<first 16 hex digits of the hash>.<ext>``: a new picture is a new
    address, so browsers and shops may keep one for a year."""
    ext = next(e for t, e in FORMATS.values() if t == item.content_type)
    return f"/media/{item.id}/{item.sha256[:16]}.{ext}"


def local_path(url: str | None) -> str | None:
    """The path of one of Treu's own images when ``url`` addresses one (whatever host
    the address was built with), else None: pages show only those (their CSP allows
    images from Treu itself)."""
    if not url:
        return None
    found = PATH.search(url)
    return found.group(0) if found else None


def _clean(data: bytes) -> tuple[bytes, str, int, int]:
    """The image in ``data`` drawn again without metadata: bytes, content type, size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                if kind not in FORMATS:
                    raise NotAnImage(
                        f"a {kind or 'unknown'} file is not a PNG, JPEG or WebP image",
                        field="image",
                    )
                if probe.width * probe.height > MAX_PIXELS:
                    raise ImageTooLarge(
                        f"{probe.width} x {probe.height} pixels is more than "
                        f"{MAX_PIXELS:,} pixels in all",
                        field="image",
                    )
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.seek(0)  # an animation keeps its first frame
                image.load()
                upright = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise NotAnImage("not a readable PNG, JPEG or WebP image", field="image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("the image has too many pixels", field="image") from None
    content_type, _ = FORMATS[kind]
    if kind == "JPEG":
        pixels = upright.convert("L" if upright.mode in ("L", "1") else "RGB")
    elif upright.mode in ("RGB", "RGBA", "L", "LA"):
        pixels = upright
    else:  # palette, CMYK, 16-bit …: keep transparency in an alpha channel
        pixels = upright.convert("RGBA")
    fresh = Image.new(pixels.mode, pixels.size)
    fresh.paste(pixels)  # a new image: nothing of the old one's ``info`` comes along
    out = io.BytesIO()
    if kind == "JPEG":
        fresh.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif kind == "PNG":
        fresh.save(out, "PNG", optimize=True)
    else:
        fresh.save(out, "WEBP", quality=JPEG_QUALITY)
    return out.getvalue(), content_type, fresh.width, fresh.height


class MediaService:
    def store(self, session: Session, *, data: bytes, actor: str) -> Media:
        """Validate and re-encode ``data`` and store the result (``NotAnImage``,
        ``ImageTooLarge`` when it is refused)."""
        if len(data) > MAX_BYTES:
            raise ImageTooLarge(
                f"the file has {len(data):,} bytes; at most {MAX_BYTES:,} are allowed",
                field="image",
            )
        if not data:
            raise NotAnImage("the file is empty", field="image")
        clean, content_type, width, height = _clean(data)
        item = Media(
            content_type=content_type,
            sha256=hashlib.sha256(clean).hexdigest(),
            size=len(clean),
            width=width,
            height=height,
            data=clean,
            actor=actor,
        )
        session.add(item)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="media.upload",
            subject_type="media",
            subject_id=str(item.id),
            data={"content_type": content_type, "size": len(clean), "sha256": item.sha256},
        )
        return item

    def get(self, session: Session, media_id: uuid.UUID | str) -> Media | None:
        return by_id(session, Media, media_id)


media = MediaService()
