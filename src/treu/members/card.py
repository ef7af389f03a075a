"""The member's digital card: the card number as a QR code and a Code 128 barcode (SVG,
for the portal's pages), as a PNG card image to save on the phone, and as an Apple
Wallet pass (``.pkpass``) signed with the retailer's pass certificate.

The barcode is drawn here from python-barcode's module pattern (``Code128.build()``):
its own SVG writer puts ``style`` attributes on every bar, which the portal's
Content-Security-Policy (no inline styles) would drop. Both codes are black on white
with their quiet zones, so tills read them from a phone at full brightness.

A pass is a ZIP of ``pass.json``, images, ``manifest.json`` (SHA-1 of every file) and
``signature``: a detached PKCS #7 signature of the manifest with the pass type
certificate, with Apple's WWDR intermediate certificate included when configured
(Wallet needs it; https://developer.apple.com/documentation/walletpasses).
"""

from __future__ import annotations

import hashlib
import io
import json
import unicodedata
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import segno
from barcode import Code128  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from PIL import Image, ImageDraw, ImageFont

QUIET = 10
"""Code 128 quiet zone: ten modules each side."""


def _qr(card_number: str) -> segno.QRCode:
    return segno.make(card_number, error="m", micro=False)


def qr_svg(card_number: str, *, title: str) -> str:
    """The card number as a QR code: inline SVG scaled by its container (viewBox)."""
    return str(
        _qr(card_number).svg_inline(
            scale=1, border=4, omitsize=True, title=title, dark="#000", light="#fff"
        )
    )


def code128_modules(card_number: str) -> str:
    """The barcode's modules, ``1`` a bar and ``0`` a space, without quiet zones."""
    return str(Code128(card_number).build()[0])


def code128_svg(card_number: str, *, title: str, height: int = 40) -> str:
    """The card number as a Code 128 barcode: inline SVG, one ``rect`` per bar."""
    modules = code128_modules(card_number)
    width = len(modules) + 2 * QUIET
    bars = []
    run_start = None
    for i, bit in enumerate(modules + "0"):
        if bit == "1" and run_start is None:
            run_start = i
        elif bit == "0" and run_start is not None:
            bars.append(
                f'<rect x="{run_start + QUIET}" y="0" width="{i - run_start}" height="{height}"/>'
            )
            run_start = None
    escaped = title.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="barcode" role="img" preserveAspectRatio="none"><title>{escaped}</title>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>'
        f'<g fill="#000">{"".join(bars)}</g></svg>'
    )


def grouped(card_number: str) -> str:
    """The number as people read it aloud: groups of four."""
    return " ".join(card_number[i : i + 4] for i in range(0, len(card_number), 4))


CARD_SIZE = (1012, 638)
"""An ID-1 card's proportions (85.6 by 54 mm) at about 300 dpi."""


FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf")
"""Fonts with umlauts looked for among the system's fonts (Pillow searches the usual
font folders); Pillow's built-in font, the fallback, has ASCII only."""


@lru_cache(maxsize=8)
def _font(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    """A font of ``size`` and whether it has more than ASCII."""
    for name in FONTS:
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    return ImageFont.load_default(size=size), False


def _text(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, size: int) -> None:
    font, wide = _font(size)
    if not wide:  # "Bäckerei" as "Backerei" rather than a missing glyph
        folded = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in folded if ord(c) < 128)
    draw.text(at, text, fill="black", font=font)


def card_png(*, programme: str, name: str | None, card_number: str) -> bytes:
    """A card image to keep in the photo library: the programme, the member's name, the
    QR code, the barcode and the number, black on white."""
    image = Image.new("RGB", CARD_SIZE, "white")
    draw = ImageDraw.Draw(image)
    width, height = CARD_SIZE
    draw.rectangle((0, 0, width - 1, height - 1), outline="black", width=4)
    _text(draw, (40, 32), programme, 44)
    if name:
        _text(draw, (40, 92), name, 32)
    qr = _qr(card_number)
    matrix = list(qr.matrix_iter(scale=1, border=2))
    cell = 250 // len(matrix)
    left, top = width - 40 - cell * len(matrix), 32
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                draw.rectangle(
                    (
                        left + x * cell,
                        top + y * cell,
                        left + (x + 1) * cell - 1,
                        top + (y + 1) * cell - 1,
                    ),
                    fill="black",
                )
    modules = code128_modules(card_number)
    bar = max(1, (width - 80) // (len(modules) + 2 * QUIET))
    start = (width - bar * len(modules)) // 2
    for i, bit in enumerate(modules):
        if bit == "1":
            draw.rectangle((start + i * bar, 380, start + (i + 1) * bar - 1, 540), fill="black")
    text = grouped(card_number)
    box = draw.textbbox((0, 0), text, font=_font(40)[0])
    _text(draw, (int(width - (box[2] - box[0])) // 2, 560), text, 40)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class PassSigner:
    """The retailer's Apple Wallet pass type certificate (``TREU_WALLET_*``)."""

    certificate: Path
    key: Path
    pass_type_id: str
    team_id: str
    key_password: str | None = None
    wwdr: Path | None = None


def _icon(size: int) -> bytes:
    image = Image.new("RGB", (size, size), "black")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pkpass(
    signer: PassSigner,
    *,
    programme: str,
    name: str | None,
    card_number: str,
    balance: int,
    points_name: str,
    serial: str,
) -> bytes:
    """A signed store card pass with the card number as a QR code and the balance."""
    document = {
        "formatVersion": 1,
        "passTypeIdentifier": signer.pass_type_id,
        "teamIdentifier": signer.team_id,
        "serialNumber": serial,
        "organizationName": programme,
        "description": programme,
        "logoText": programme,
        "foregroundColor": "rgb(0, 0, 0)",
        "backgroundColor": "rgb(255, 255, 255)",
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": card_number,
                "messageEncoding": "iso-8859-1",
                "altText": grouped(card_number),
            }
        ],
        "storeCard": {
            "primaryFields": [
                {"key": "balance", "label": points_name, "value": balance},
            ],
            "secondaryFields": [{"key": "name", "label": "", "value": name or ""}],
            "backFields": [{"key": "card", "label": "Card", "value": grouped(card_number)}],
        },
    }
    files = {
        "pass.json": json.dumps(document, ensure_ascii=False).encode(),
        "icon.png": _icon(29),
        "icon@2x.png": _icon(58),
    }
    manifest = json.dumps(
        {
            name: hashlib.sha1(data, usedforsecurity=False).hexdigest()
            for name, data in files.items()
        },
        sort_keys=True,
    ).encode()
    certificate = x509.load_pem_x509_certificate(signer.certificate.read_bytes())
    password = signer.key_password.encode() if signer.key_password else None
    key = serialization.load_pem_private_key(signer.key.read_bytes(), password=password)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(manifest)
    builder = builder.add_signer(certificate, key, hashes.SHA256())  # type: ignore[arg-type]
    if signer.wwdr is not None:
        builder = builder.add_certificate(x509.load_pem_x509_certificate(signer.wwdr.read_bytes()))
    signature = builder.sign(
        serialization.Encoding.DER,
        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name_, data in files.items():
            archive.writestr(name_, data)
        archive.writestr("manifest.json", manifest)
        archive.writestr("signature", signature)
    return out.getvalue()
