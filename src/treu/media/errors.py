from __future__ import annotations

from treu.errors import Invalid


class NotAnImage(Invalid):
    code = "image_invalid"
    title = "Not a PNG, JPEG or WebP image"


class ImageTooLarge(Invalid):
    code = "image_too_large"
    title = "The image is too large"
