"""Per-face quality from pixels and landmarks: size, sharpness, exposure, head pose; and why a face is unusable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from agent.config import QualityConfig
from agent.vision.detector import shrink
from agent.vision.face import Face

SHARPNESS_SIDE = 112  # faces are resized to this before the Laplacian, so sizes compare
PITCH_NEUTRAL = 0.55  # nose position between eye line (0) and mouth line (1) on a level, frontal face
FRONTAL_EYE_RATIO = 0.46  # eye distance / face box width of a frontal face (measured on the test photos)
# The detector often boxes only the visible part of a face that leaves the frame, so a box this close to
# the edge (a share of its own size) is taken as cut.
EDGE_MARGIN = 0.05


@dataclass(frozen=True)
class Quality:
    """Measurements of one face (the `quality` of `detect --json`, plus `clipped_fraction` and `cut_by_edge`)."""

    eye_distance_px: float
    sharpness: float
    brightness: float
    clipped_fraction: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    face_px: float
    cut_by_edge: bool

    def as_json(self) -> dict[str, float]:
        data = asdict(self)
        data.pop("cut_by_edge")
        data.pop("face_px")
        return {k: round(float(v), 1) if k != "clipped_fraction" else round(float(v), 3) for k, v in data.items()}


def head_pose(landmarks: np.ndarray, face_width: float | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, estimated from the 5 landmarks (and the box width when given).

    Roll is the eye line's angle. Yaw and pitch are read in the roll-corrected frame: yaw from how far
    the nose sits towards one eye, and from how foreshortened the eye distance is against the face
    width; pitch from where the nose sits between the eye and mouth lines.
    Estimates, good to ~10 degrees: enough to refuse a turned head, not to measure it.
    """
    left_eye, right_eye, nose, left_mouth, right_mouth = landmarks
    dx, dy = right_eye - left_eye
    roll = math.atan2(dy, dx)
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    pts = (landmarks - left_eye) @ rotation.T
    eye_mid = (pts[0] + pts[1]) / 2
    mouth_mid = (pts[3] + pts[4]) / 2
    d_left = float(np.linalg.norm(pts[2] - pts[0]))
    d_right = float(np.linalg.norm(pts[2] - pts[1]))
    asym = (d_left - d_right) / max(d_left + d_right, 1e-6)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2 * asym))))
    if face_width:
        ratio = min(1.0, float(np.linalg.norm(pts[1] - pts[0])) / (face_width * FRONTAL_EYE_RATIO))
        foreshortened = math.degrees(math.acos(ratio))
        if foreshortened > abs(yaw):
            yaw = math.copysign(foreshortened, yaw)
    span = mouth_mid[1] - eye_mid[1]
    t = (pts[2][1] - eye_mid[1]) / span if abs(span) > 1e-6 else PITCH_NEUTRAL
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, 2 * (t - PITCH_NEUTRAL)))))
    return yaw, pitch, math.degrees(roll)


def measure(frame: np.ndarray, face: Face) -> Quality:
    """Measure one face in a BGR frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = face.box
    mx, my = EDGE_MARGIN * face.width, EDGE_MARGIN * face.height
    cut = x1 < mx or y1 < my or x2 > w - mx or y2 > h - my
    ix1, iy1 = max(0, int(math.floor(x1))), max(0, int(math.floor(y1)))
    ix2, iy2 = min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))
    if ix2 - ix1 < 2 or iy2 - iy1 < 2:
        grey = np.zeros((SHARPNESS_SIDE, SHARPNESS_SIDE), dtype=np.uint8)
    else:
        grey = cv2.cvtColor(frame[iy1:iy2, ix1:ix2], cv2.COLOR_BGR2GRAY)
    clipped = 1.0 - cv2.countNonZero(cv2.inRange(grey, 6, 249)) / grey.size  # one pass, no temporary arrays
    brightness = float(cv2.mean(grey)[0])
    fixed = shrink(grey, SHARPNESS_SIDE, SHARPNESS_SIDE)
    sharpness = float(cv2.meanStdDev(cv2.Laplacian(fixed, cv2.CV_64F))[1][0, 0] ** 2)
    yaw, pitch, roll = head_pose(face.landmarks, face.width)
    return Quality(
        eye_distance_px=float(np.linalg.norm(face.landmarks[1] - face.landmarks[0])),
        sharpness=sharpness,
        brightness=brightness,
        clipped_fraction=clipped,
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        face_px=min(face.width, face.height),
        cut_by_edge=cut,
    )


TOO_SMALL = "face too small"


def unusable_reasons(q: Quality, cfg: QualityConfig) -> list[str]:
    """Human-readable reasons why a face should not be enrolled; empty when it is usable."""
    reasons = []
    if q.face_px < cfg.min_face_px:
        reasons.append(f"{TOO_SMALL}: {q.face_px:.0f} px < {cfg.min_face_px:.0f} px")
    if q.eye_distance_px < cfg.min_eye_distance_px:
        reasons.append(f"eyes too close: {q.eye_distance_px:.0f} px < {cfg.min_eye_distance_px:.0f} px apart")
    if q.cut_by_edge:
        reasons.append("face cut by the frame edge")
    if q.sharpness < cfg.min_sharpness:
        reasons.append(f"blurry: sharpness {q.sharpness:.0f} < {cfg.min_sharpness:.0f}")
    if q.brightness < cfg.min_brightness:
        reasons.append(f"too dark: brightness {q.brightness:.0f} < {cfg.min_brightness:.0f}")
    if q.brightness > cfg.max_brightness:
        reasons.append(f"too bright: brightness {q.brightness:.0f} > {cfg.max_brightness:.0f}")
    if q.clipped_fraction > cfg.max_clipped_fraction:
        reasons.append(f"badly exposed: {q.clipped_fraction:.0%} of the face clipped > {cfg.max_clipped_fraction:.0%}")
    if abs(q.yaw_deg) > cfg.max_yaw_deg:
        reasons.append(f"head turned: yaw {q.yaw_deg:.0f} deg, limit {cfg.max_yaw_deg:.0f}")
    if abs(q.pitch_deg) > cfg.max_pitch_deg:
        reasons.append(f"head tilted up or down: pitch {q.pitch_deg:.0f} deg, limit {cfg.max_pitch_deg:.0f}")
    if abs(q.roll_deg) > cfg.max_roll_deg:
        reasons.append(f"head tilted sideways: roll {q.roll_deg:.0f} deg, limit {cfg.max_roll_deg:.0f}")
    return reasons


def capture_rank(face: Face, q: Quality) -> float:
    """A single number to rank usable captures: bigger, sharper, more frontal, more confident is better."""
    sharp = min(1.0, max(0.2, q.sharpness / 300.0))
    pose = math.cos(math.radians(min(abs(q.yaw_deg), 89))) * math.cos(math.radians(min(abs(q.pitch_deg), 89)))
    return q.eye_distance_px * face.score * sharp * pose
