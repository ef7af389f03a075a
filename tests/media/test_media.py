"""Storing uploaded images: only PNG, JPEG and WebP recognised by their content, at most
1 MiB and 25 megapixels, drawn again without metadata or trailing bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from treu.db.session import Database
from treu.media.errors import ImageTooLarge, NotAnImage
from treu.media.service import MAX_BYTES, local_path, media, path_of


def _encoded(
    kind: str, mode: str = "RGB", size: tuple[int, int] = (32, 24), **save: object
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "purple" if mode != "P" else 3).save(out, kind, **save)
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "content_type", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_each_format_is_stored_as_itself(
    db: Database, kind: str, content_type: str, ext: str
) -> None:
    with db.unit_of_work() as session:
        item = media.store(session, data=_encoded(kind), actor="test")
        assert (item.content_type, item.width, item.height) == (content_type, 32, 24)
        assert path_of(item).endswith(f"/{item.sha256[:16]}.{ext}")
        assert local_path("https://treu.example" + path_of(item)) == path_of(item)
        assert media.get(session, item.id) is item


def test_metadata_and_trailing_bytes_are_dropped(db: Database) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home, 52.52N 13.40E")
    exif = Image.Exif()
    exif[0x010F] = "Phone Maker"
    out = io.BytesIO()
    Image.new("RGB", (10, 10), "red").save(out, "PNG", pnginfo=info, exif=exif)
    polyglot = out.getvalue() + b"<script>alert(1)</script>"
    with db.unit_of_work() as session:
        item = media.store(session, data=polyglot, actor="test")
        data = item.data
    assert b"52.52N" not in data
    assert b"Phone Maker" not in data
    assert b"<script>" not in data
    with Image.open(io.BytesIO(data)) as again:
        assert again.format == "PNG"
        assert "Comment" not in again.info
        assert not again.getexif()


def test_a_palette_image_keeps_its_transparency(db: Database) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    out = io.BytesIO()
    image.save(out, "PNG", transparency=0)
    with db.unit_of_work() as session:
        item = media.store(session, data=out.getvalue(), actor="test")
        data = item.data
    with Image.open(io.BytesIO(data)) as again:
        assert again.mode == "RGBA"
        assert again.getpixel((0, 0))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just text",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        _encoded("GIF", mode="P"),
        _encoded("BMP"),
        _encoded("PNG")[:40],
    ],
)
def test_what_is_not_a_png_jpeg_or_webp_is_refused(db: Database, data: bytes) -> None:
    with db.unit_of_work() as session, pytest.raises(NotAnImage):
        media.store(session, data=data, actor="test")


def test_too_many_bytes_or_pixels_are_refused(db: Database) -> None:
    with db.unit_of_work() as session, pytest.raises(ImageTooLarge):
        media.store(session, data=b"\x89PNG" + b"\x00" * MAX_BYTES, actor="test")
    # 6000 x 6000 of one colour compresses to a few KB but would decode to 100 MB
    huge = _encoded("PNG", mode="L", size=(6000, 6000))
    assert len(huge) < MAX_BYTES
    with db.unit_of_work() as session, pytest.raises(ImageTooLarge):
        media.store(session, data=huge, actor="test")


def test_local_path_recognises_only_treus_own_addresses() -> None:
    assert local_path(None) is None
    assert local_path("https://shop.example/img/x.png") is None
    assert local_path("https://cdn.example/media/not-an-id/0123456789abcdef.png") is None
