"""Choosing the face to enroll in a frame, and the best distinct captures of a burst.

Cloud recognisers enroll the *largest* face they see, so the rule is conservative: the target is the
largest face, and the verdict is decided in this order —
  1. no face at all: `no_face` ("look at the camera");
  2. faces, but every one below `quality.min_face_px`: `face_too_small` ("move closer"), a crowd
     far away included, because coming closer is what changes the answer;
  3. another face at least `selection.multiple_face_ratio` of the target's area: `multiple_faces`,
     whatever the target's quality (a sharper, frontal target would not make it the only person);
  4. the target unusable: `face_too_small` when size is among its reasons, else `low_quality`;
  5. `ok`. Never guess who is being enrolled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.config import QualityConfig, SelectionConfig
from agent.errors import ErrorCode
from agent.vision.detector import FaceDetector
from agent.vision.face import Face
from agent.vision.quality import TOO_SMALL, Quality, capture_rank, measure, unusable_reasons

# Operator guidance for progress events, by verdict.
GUIDANCE = {
    ErrorCode.NO_FACE: "no face yet: look at the camera",
    ErrorCode.FACE_TOO_SMALL: "move closer",
    ErrorCode.MULTIPLE_FACES: "only one person please",
    ErrorCode.LOW_QUALITY: "hold still, face the camera",
}


@dataclass(frozen=True)
class Refusal:
    """Why a frame (or its crop) cannot be enrolled: kept whole, so its own code reaches the result."""

    code: ErrorCode
    detail: str

    @property
    def guidance(self) -> str:
        return GUIDANCE.get(self.code, self.detail)


@dataclass(frozen=True)
class FaceReport:
    face: Face
    quality: Quality
    reasons: list[str]

    @property
    def usable(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, object]:
        """The per-face object of `detect --json` and of result `captures` (README, "Command line"; docs/mqtt-api.md)."""
        return {
            "box": self.face.xywh(),
            "score": round(self.face.score, 3),
            "landmarks": [[round(float(x)), round(float(y))] for x, y in self.face.landmarks],
            "quality": self.quality.as_json(),
            "usable": self.usable,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Analysis:
    """Everything known about one frame: its faces (largest first), the chosen one, and why it is refused (None: ok)."""

    width: int
    height: int
    faces: list[FaceReport]
    best: int | None
    refusal: Refusal | None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.refusal is None

    @property
    def verdict(self) -> str:
        """`ok` or the refusal's code, as `detect --json` and snapshots show it."""
        return "ok" if self.refusal is None else self.refusal.code.value

    @property
    def detail(self) -> str:
        return "" if self.refusal is None else self.refusal.detail

    @property
    def target(self) -> FaceReport | None:
        return self.faces[self.best] if self.best is not None else None

    @property
    def guidance(self) -> str:
        return "hold still" if self.refusal is None else self.refusal.guidance


def _too_small(report: FaceReport) -> bool:
    return any(r.startswith(TOO_SMALL) for r in report.reasons)


def choose_face(reports: Sequence[FaceReport], cfg: SelectionConfig) -> tuple[int | None, Refusal | None]:
    """(index of the face to enroll, None) or (None, why not) for faces sorted largest first (order: module docstring)."""
    if not reports:
        return None, Refusal(ErrorCode.NO_FACE, "no face found")
    target = reports[0]
    if all(_too_small(r) for r in reports):
        detail = "; ".join(target.reasons)
        if len(reports) > 1:
            detail = f"all {len(reports)} faces too small (the largest: {detail})"
        return None, Refusal(ErrorCode.FACE_TOO_SMALL, detail)
    for other in reports[1:]:
        ratio = other.face.area / max(target.face.area, 1e-6)
        if ratio >= cfg.multiple_face_ratio:
            return None, Refusal(ErrorCode.MULTIPLE_FACES,
                                 f"two faces of similar size ({ratio:.0%} of the largest): refusing to guess who to enroll")
    if not target.usable:
        # A small face is also blurry and its pose is noisy: "move closer" is the useful answer.
        code = ErrorCode.FACE_TOO_SMALL if _too_small(target) else ErrorCode.LOW_QUALITY
        return None, Refusal(code, "; ".join(target.reasons))
    return 0, None


def analyze(
    detector: FaceDetector,
    image: np.ndarray,
    quality_cfg: QualityConfig,
    selection_cfg: SelectionConfig,
    detect_image: np.ndarray | None = None,
) -> Analysis:
    """Detect, measure and choose in one BGR frame.

    `image` is the capture (upload) frame. `detect_image`, when given, is the same instant at a smaller
    size and possibly another aspect (picamera2's `lores`, `Frame.detect_image`): the detector's first
    pass runs on it. Whatever the camera, every box, landmark and quality figure of the result is in
    pixels of `image`, so `quality.min_face_px` means capture pixels.
    """
    faces = sorted(detector.detect(image, detect_image), key=lambda f: f.area, reverse=True)
    reports = []
    for face in faces:
        q = measure(image, face)
        reports.append(FaceReport(face, q, unusable_reasons(q, quality_cfg)))
    best, refusal = choose_face(reports, selection_cfg)
    return Analysis(image.shape[1], image.shape[0], reports, best, refusal)


@dataclass(frozen=True)
class Candidate:
    """A usable target face seen at `timestamp` in `frame` (kept for cropping later)."""

    timestamp: float
    frame: np.ndarray
    report: FaceReport

    @property
    def rank(self) -> float:
        return capture_rank(self.report.face, self.report.quality)


MIN_POSE_CHANGE_DEG = 3.0


def _near_duplicate(a: Candidate, b: Candidate, min_gap_s: float) -> bool:
    pose = math.hypot(a.report.quality.yaw_deg - b.report.quality.yaw_deg, a.report.quality.pitch_deg - b.report.quality.pitch_deg)
    return abs(a.timestamp - b.timestamp) < min_gap_s or pose < MIN_POSE_CHANGE_DEG


def pick_captures(candidates: Sequence[Candidate], count: int, min_gap_s: float) -> list[Candidate]:
    """The best `count` candidates, preferring ones that differ in time and pose over near-duplicates.

    Greedy by rank: first only candidates that are neither too close in time nor in pose to one already
    picked; then, if that is not enough, those at least `min_gap_s` apart; then the best of the rest.
    Returned in time order.
    """
    ranked = sorted(candidates, key=lambda c: c.rank, reverse=True)
    picked: list[Candidate] = []
    rules: tuple[Callable[[Candidate], bool], ...] = (
        lambda c: not any(_near_duplicate(c, p, min_gap_s) for p in picked),
        lambda c: all(abs(c.timestamp - p.timestamp) >= min_gap_s for p in picked),
        lambda c: True,
    )
    for accept in rules:
        for cand in ranked:
            if len(picked) >= count:
                break
            if not any(cand is p for p in picked) and accept(cand):
                picked.append(cand)
    return sorted(picked, key=lambda c: c.timestamp)
