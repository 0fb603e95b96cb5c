"""The image a liveness check is sent: a 3:4 portrait cut around the target face from the full-resolution frame.

IAI's DetectLiveFaceAccurate wants a still image near 3:4 (as a phone takes it) with a face larger than 100x100 px.
The upload crop (a square, maybe downscaled) is not that, so this one is cut separately from the same frame:
never upscaled (that would invent detail a liveness model judges), and refused locally when the face is too small,
before a billed call could fail.
"""

from __future__ import annotations

import math

import numpy as np

from agent.errors import ErrorCode
from agent.images import encode_jpeg
from agent.vision.crop import CropRefused
from agent.vision.face import Face

LIVE_MIN_FACE_PX = 112  # IAI's "larger than 100x100" plus a margin: the cloud's detector may draw a slightly smaller box
LIVE_ASPECT = 3 / 4  # width / height
LIVE_FACE_SHARE = 0.5  # the face box's height is about half the image's: head, neck and shoulders
LIVE_MAX_SIDE = 2000  # well inside IAI's 4000 px JPEG limit


def portrait_region(face: Face, frame_w: int, frame_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the 3:4 region centred on the face, shifted (not padded) to stay inside the frame."""
    x1, y1, x2, y2 = face.box
    fw, fh = x2 - x1, y2 - y1
    h = max(fh / LIVE_FACE_SHARE, fw * 1.6 / LIVE_ASPECT)
    h = min(h, frame_h, frame_w / LIVE_ASPECT)  # the largest 3:4 region the frame holds
    w = h * LIVE_ASPECT
    w, h = int(math.floor(w)), int(math.floor(h))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x = int(round(min(max(cx - w / 2, 0), frame_w - w)))
    y = int(round(min(max(cy - h / 2, 0), frame_h - h)))
    return x, y, w, h


def liveness_crop(frame: np.ndarray, face: Face, jpeg_quality: int) -> bytes:
    """The JPEG DetectLiveFaceAccurate is sent for `face`; `CropRefused` (face_too_small) when the face is too small."""
    x1, y1, x2, y2 = face.box
    side = min(x2 - x1, y2 - y1)
    if side < LIVE_MIN_FACE_PX:
        raise CropRefused(f"the face is {side:.0f} px: the liveness check needs at least {LIVE_MIN_FACE_PX} px, move closer",
                          code=ErrorCode.FACE_TOO_SMALL)
    height, width = frame.shape[:2]
    x, y, w, h = portrait_region(face, width, height)
    image = frame[y:y + h, x:x + w]
    if max(w, h) > LIVE_MAX_SIDE:
        import cv2

        scale = LIVE_MAX_SIDE / max(w, h)
        if side * scale >= LIVE_MIN_FACE_PX:
            image = cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    return encode_jpeg(np.ascontiguousarray(image), jpeg_quality)
