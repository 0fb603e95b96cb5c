"""Image files and buffers <-> BGR uint8 frames (the one frame format of the whole agent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.errors import ImageUnreadable

# Magic numbers of the formats IAI accepts, plus GIF so it can be refused by name.
_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}


def sniff_format(data: bytes) -> str | None:
    """`jpeg`, `png`, `bmp`, `gif`, or None, from the first bytes."""
    for magic, name in _SIGNATURES.items():
        if data.startswith(magic):
            return name
    return None


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """Decode encoded image bytes into a BGR uint8 HxWx3 frame; `ImageUnreadable` naming `what` otherwise."""
    if not data:
        raise ImageUnreadable(f"{what} is empty")
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ImageUnreadable(f"{what} is not a decodable image")
    return ensure_bgr(frame)


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file into a BGR uint8 frame; `ImageUnreadable` naming the file otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageUnreadable(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ImageUnreadable(f"{path} is a directory, not an image") from None
    except OSError as exc:
        raise ImageUnreadable(f"{path} cannot be read: {exc.strerror or exc}") from None
    return decode_image(data, str(path))


def ensure_bgr(frame: np.ndarray) -> np.ndarray:
    """Make `frame` a contiguous BGR uint8 HxWx3 array (grey and BGRA are converted)."""
    if frame.dtype != np.uint8:
        raise ImageUnreadable(f"frame dtype is {frame.dtype}, expected uint8")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise ImageUnreadable(f"frame shape {frame.shape} is not HxWx3")
    return np.ascontiguousarray(frame)


def encode_jpeg(frame: np.ndarray, quality: int = 92) -> bytes:
    """Encode a BGR frame as baseline JPEG."""
    ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ImageUnreadable("JPEG encoding failed")
    return bytes(buf.tobytes())


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_path_problem(path: Path) -> str | None:
    """Why an image cannot be written to `path` (checked before a camera is opened), or None."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"{path}: the file name must end in {', '.join(IMAGE_SUFFIXES)} (the format follows it)"
    if not path.parent.is_dir():
        return f"{path}: the folder {path.parent} does not exist"
    return None


def write_image(path: Path, frame: np.ndarray, jpeg_quality: int = 92) -> None:
    """Write a frame; the format follows the suffix (.jpg/.jpeg/.png/.bmp). `ImageUnreadable` says why it cannot."""
    problem = image_path_problem(path)
    if problem is not None:
        raise ImageUnreadable(f"cannot write {problem}")
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(path.suffix.lower(), frame, params)
    if not ok:
        raise ImageUnreadable(f"cannot encode {path.name}")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise ImageUnreadable(f"cannot write {path}: {exc.strerror or exc}") from None
