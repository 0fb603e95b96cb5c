"""IAI's documented limits (docs/iai.md) and the local check of one image against them.

Shared by the crop (so the agent never produces an image the cloud refuses) and the client
(so a bad image gets a clear local error instead of a wasted call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import ErrorCode, FaceAgentError, ImageUnreadable
from agent.images import decode_image, sniff_format

MAX_IMAGES_PER_CALL = 4
MAX_FACES_PER_PERSON = 5
MAX_IMAGE_B64_BYTES = 5 * 1024 * 1024
MAX_BODY_BYTES = 10 * 1024 * 1024
JPEG_MAX_LONG_SIDE = 4000
OTHER_MAX_LONG_SIDE = 2000
MIN_SHORT_SIDE = 64
PERSON_ID_RE = re.compile(r"^[A-Za-z0-9\-%@#&_]{1,64}$")
PERSON_NAME_MAX = 60


class ImageRejected(FaceAgentError):
    """An image that IAI would refuse; found locally before any call."""

    code = ErrorCode.INVALID_COMMAND


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    b64_len: int


def check_person_id(person_id: str) -> None:
    """PersonId: 1-64 bytes of letters, digits and -%@#&_ (ASCII only, so bytes == chars)."""
    if not PERSON_ID_RE.match(person_id):
        raise ImageRejected(f"person_id {person_id!r} is invalid: use 1-64 letters, digits or -%@#&_", code=ErrorCode.INVALID_COMMAND)


def check_image(data: bytes, index: int = 0) -> ImageInfo:
    """Check one encoded image against IAI's format, dimension and size rules; return what was found."""
    what = f"image {index}"
    fmt = sniff_format(data)
    if fmt == "gif":
        raise ImageRejected(f"{what} is a GIF: IAI accepts only JPEG, PNG and BMP")
    if fmt is None:
        raise ImageRejected(f"{what} is not a JPEG, PNG or BMP file")
    b64_len = 4 * ((len(data) + 2) // 3)
    if b64_len > MAX_IMAGE_B64_BYTES:
        raise ImageRejected(f"{what} is {b64_len} bytes in base64: IAI allows at most 5 MB")
    try:
        frame = decode_image(data, what)
    except ImageUnreadable as exc:
        raise ImageRejected(exc.message) from None
    height, width = frame.shape[:2]
    long_side, short_side = max(width, height), min(width, height)
    limit = JPEG_MAX_LONG_SIDE if fmt == "jpeg" else OTHER_MAX_LONG_SIDE
    if long_side > limit:
        raise ImageRejected(f"{what} is {width}x{height}: the long side of a {fmt.upper()} must be <= {limit} px")
    if short_side < MIN_SHORT_SIDE:
        raise ImageRejected(f"{what} is {width}x{height}: the short side must be >= {MIN_SHORT_SIDE} px")
    return ImageInfo(fmt, width, height, b64_len)
