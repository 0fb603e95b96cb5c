"""What the emulator sees in an uploaded image: IAI's format and size rules, the faces, and two emulations.

The format, size and RetCode rules are IAI's (limits.py). "Is there a face" is judged by the bundled detector.
Two things the service computes with models of its own are emulated deterministically (docs/emulator.md):

- quality (QualityControl 1-4): graded from the sharpness (variance of the Laplacian) and the brightness (mean grey)
  of the largest face, resized to a fixed size;
- similarity (FaceMatchThreshold, SearchFaces Score, UniquePersonControl): 100 for the exact same image bytes,
  otherwise 60 + 30 x the correlation of small grey thumbnails of the two faces, at most 90. It measures image
  likeness, not identity: the same photo resized, cropped, blurred or darkened scores 87-90, the different people of the test photos 66-74.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from agent.devtools.emulator import limits

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels

THUMB_SIDE = 24  # the similarity thumbnail: 24x24 grey
QUALITY_SIDE = 112  # the face is resized to this before grading its quality
IDENTICAL_SCORE = 100.0
MAX_LIKENESS_SCORE = 90.0  # any image other than the same bytes scores at most this

_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"BM": "bmp", b"GIF87a": "gif", b"GIF89a": "gif"}


def image_format(data: bytes) -> str | None:
    """`jpeg`, `png`, `bmp`, `gif` or None, from the magic bytes (IAI takes PNG, JPG, JPEG and BMP, never GIF)."""
    return next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)


@dataclass(frozen=True)
class FacePrint:
    """What the similarity emulation keeps of one face: the image's SHA-256 and the face's grey thumbnail."""

    sha256: str
    thumb: bytes  # THUMB_SIDE * THUMB_SIDE uint8

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256, "thumb": base64.b64encode(self.thumb).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> FacePrint:
        return cls(data["sha256"], base64.b64decode(data["thumb"]))


def similarity(a: FacePrint, b: FacePrint) -> float:
    """The emulated score of two faces (0-100): 100 for identical bytes, else 60 + 30 x correlation, capped at 90."""
    if a.sha256 == b.sha256:
        return IDENTICAL_SCORE
    x = np.frombuffer(a.thumb, np.uint8).astype(np.float64)
    y = np.frombuffer(b.thumb, np.uint8).astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x @ x) * (y @ y)))
    correlation = float(x @ y) / norm if norm else 0.0
    return round(min(MAX_LIKENESS_SCORE, max(0.0, 60.0 + 30.0 * correlation)), 2)


def synthetic_print(seed: str) -> FacePrint:
    """A face no test ever sends (another writer's): a thumbnail of seeded noise and a hash of no real image."""
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    thumb = rng.integers(0, 256, THUMB_SIDE * THUMB_SIDE, dtype=np.uint8).tobytes()
    return FacePrint(hashlib.sha256(b"foreign:" + seed.encode()).hexdigest(), thumb)


def quality_level(sharpness: float, brightness: float) -> int:
    """The highest QualityControl level (0-4) a face passes; the emulation of the documented levels.

    1 refuses "very blurry"; 2 refuses very blurry, or blurry and badly exposed together; 3 refuses blurry or badly
    exposed; 4 refuses even a slight blur or a slightly off exposure.
    """
    very_blurry, blurry, slightly_blurry = sharpness < 25, sharpness < 60, sharpness < 120
    badly_exposed = not 60 <= brightness <= 200
    slightly_off = not 80 <= brightness <= 180
    if very_blurry:
        return 0
    if blurry and badly_exposed:
        return 1
    if blurry or badly_exposed:
        return 2
    if slightly_blurry and slightly_off:
        return 3
    return 4


class FaceChecker:
    """Faces found by the bundled detector (loaded on first use, shared by every server), largest first."""

    _detector: Any = None
    _lock = threading.Lock()

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def faces(self, frame: np.ndarray) -> list[Box]:
        if not self.enabled:
            h, w = frame.shape[:2]
            return [(w // 4, h // 4, w // 2, h // 2)]
        with self._lock:
            if FaceChecker._detector is None:
                from agent.vision.detector import FaceDetector

                FaceChecker._detector = FaceDetector(input_size=(320, 240), threads=1, score_threshold=0.7)
            found = FaceChecker._detector.detect(frame)
        return [(x, y, w, h) for x, y, w, h in (face.xywh() for face in sorted(found, key=lambda f: f.area, reverse=True))]


def _face_grey(frame: np.ndarray, box: Box, side: int) -> np.ndarray:
    """The face's grey pixels (clipped to the frame) resized to side x side."""
    x, y, w, h = box
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)


def _colour(frame: np.ndarray, box: Box) -> float:
    """How colourful the face is: the mean spread of its B, G, R values (0 for grey pixels)."""
    x, y, w, h = box
    height, width = frame.shape[:2]
    face = frame[max(0, y):min(height, y + h), max(0, x):min(width, x + w)].astype(np.int16)
    return float((face.max(axis=2) - face.min(axis=2)).mean()) if face.size else 0.0


@dataclass(frozen=True)
class SeenFace:
    """One face of an accepted image: its box, what similarity keeps of it, and its quality level."""

    box: Box
    print: FacePrint
    quality: int
    colour: float = 0.0  # mean (max - min) of B, G, R over the face: ~0 for a grey print or screen (the liveness emulation)

    def rect(self) -> dict[str, int]:
        return {"X": self.box[0], "Y": self.box[1], "Width": self.box[2], "Height": self.box[3]}


@dataclass(frozen=True)
class Examined:
    """The verdict on one uploaded image: a refusal reason (and its RetCode), or its faces, largest first."""

    reason: str | None  # empty, too_big, decode, resolution_exceed, resolution_too_small, no_face; None when accepted
    faces: tuple[SeenFace, ...] = ()

    @property
    def ret_code(self) -> int:
        return {None: limits.RET_OK, "no_face": limits.RET_NO_FACE, "decode": limits.RET_DECODE_FAILED,
                "empty": limits.RET_DECODE_FAILED}.get(self.reason, limits.RET_SIZE)

    @property
    def largest(self) -> SeenFace:
        return self.faces[0]


# The error codes of single-image actions (CreatePerson, SearchFaces), per refusal reason.
SINGLE_IMAGE_ERRORS = {
    "empty": ("InvalidParameterValue.ImageEmpty", "The image is empty."),
    "too_big": ("FailedOperation.ImageSizeExceed", "The image is larger than 5 MB in base64."),
    "decode": ("FailedOperation.ImageDecodeFailed", "The image could not be decoded."),
    "resolution_exceed": ("FailedOperation.ImageResolutionExceed", "The image's long side is too large."),
    "resolution_too_small": ("FailedOperation.ImageResolutionTooSmall", "The image's short side is below 64 px."),
    "no_face": ("InvalidParameterValue.NoFaceInPhoto", "There is no face in the image."),
}


def examine(image_b64: Any, checker: FaceChecker) -> Examined:
    """Apply IAI's image rules to one base64 image and find its faces."""
    if not isinstance(image_b64, str) or not image_b64:
        return Examined("empty")
    if len(image_b64) > limits.MAX_IMAGE_B64_BYTES:
        return Examined("too_big")
    try:
        data = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        return Examined("decode")
    fmt = image_format(data)
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if fmt not in (None, "gif") else None
    if frame is None:
        return Examined("decode")
    height, width = frame.shape[:2]
    if max(width, height) > (limits.JPEG_MAX_LONG_SIDE if fmt == "jpeg" else limits.OTHER_MAX_LONG_SIDE):
        return Examined("resolution_exceed")
    if min(width, height) < limits.MIN_SHORT_SIDE:
        return Examined("resolution_too_small")
    boxes = checker.faces(frame)
    if not boxes:
        return Examined("no_face")
    sha = hashlib.sha256(data).hexdigest()
    seen = []
    for index, box in enumerate(boxes):
        grey = _face_grey(frame, box, QUALITY_SIDE)
        quality = quality_level(float(cv2.Laplacian(grey, cv2.CV_64F).var()), float(grey.mean()))
        # Only the largest face stands for the image's bytes: a second face of one photo is not "the same image".
        face_sha = sha if index == 0 else f"{sha}:{index}"
        seen.append(SeenFace(box, FacePrint(face_sha, _face_grey(frame, box, THUMB_SIDE).tobytes()), quality, _colour(frame, box)))
    return Examined(None, tuple(seen))
