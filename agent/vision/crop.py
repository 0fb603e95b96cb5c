"""The crop that is uploaded: a square around the target face, from the full-resolution frame.

Square at `scale` x the face box (head and shoulders, never the tight box), padded — not shifted —
at the frame edge so the face stays centred, never upscaled. The detector runs again on the crop to
prove the target is its largest face, because the cloud enrolls the largest face it sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from agent.config import CropConfig, SelectionConfig
from agent.errors import ErrorCode, FaceAgentError
from agent.iai.limits import check_image
from agent.images import encode_jpeg
from agent.vision.detector import FaceDetector
from agent.vision.face import Face, cut_square, iou

MAX_UPLOAD_SIDE = 1920  # well inside IAI's 4000 px JPEG limit; bigger crops are downscaled
MIN_IOU_WITH_TARGET = 0.5


class CropRefused(FaceAgentError):
    """The crop would not enroll the intended face (another face dominates, or the target vanished)."""

    code = ErrorCode.MULTIPLE_FACES


@dataclass(frozen=True)
class Crop:
    image: np.ndarray
    jpeg: bytes
    region: tuple[int, int, int]  # x, y, side in frame pixels (may reach outside the frame)
    resize: float  # crop pixels per frame pixel (<= 1: never upscaled)
    face_in_crop: Face


def square_region(face: Face, scale: float, min_side: int) -> tuple[int, int, int]:
    """(x, y, side) of the square centred on the face box, `scale` x its longer side, at least `min_side`."""
    x1, y1, x2, y2 = face.box
    side = max(int(math.ceil(max(x2 - x1, y2 - y1) * scale)), min_side)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_for_upload(
    detector: FaceDetector, frame: np.ndarray, target: Face, crop_cfg: CropConfig, selection_cfg: SelectionConfig
) -> Crop:
    """Cut, verify and encode the upload crop for `target`; `CropRefused` when it would enroll someone else."""
    x, y, side = square_region(target, crop_cfg.scale, crop_cfg.min_side_px)
    image = cut_square(frame, x, y, side)
    resize = 1.0
    if side > MAX_UPLOAD_SIDE:
        resize = MAX_UPLOAD_SIDE / side
        image = cv2.resize(image, (MAX_UPLOAD_SIDE, MAX_UPLOAD_SIDE), interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = target.box
    expected = ((x1 - x) * resize, (y1 - y) * resize, (x2 - x) * resize, (y2 - y) * resize)
    faces = sorted(detector.detect(image), key=lambda f: f.area, reverse=True)
    if not faces or iou(faces[0].box, expected) < MIN_IOU_WITH_TARGET:
        if faces:
            raise CropRefused("another face is the largest in the crop: refusing to guess who to enroll")
        raise CropRefused("the face was not found again in the crop; hold still", code=ErrorCode.LOW_QUALITY)
    for other in faces[1:]:
        if other.area >= selection_cfg.multiple_face_ratio * faces[0].area:
            raise CropRefused("two faces of similar size in the crop: only one person please")
    jpeg = encode_jpeg(image, crop_cfg.jpeg_quality)
    check_image(jpeg)
    return Crop(image=image, jpeg=jpeg, region=(x, y, side), resize=resize, face_in_crop=faces[0])
