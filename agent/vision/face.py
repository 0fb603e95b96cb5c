"""A detected face, and the box arithmetic shared by the detector, its crop checks and the upload crop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in source-frame pixels.

    `box` is (x1, y1, x2, y2) as floats (it may reach past the frame edge); `landmarks` is 5x2:
    image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def short_side(self) -> float:
        """The shorter side of the box: what `quality.min_face_px` is compared with."""
        return min(self.width, self.height)

    def xywh(self) -> list[int]:
        """`[x, y, width, height]` rounded to pixels (the `box` of `detect --json` and of result `captures`)."""
        x1, y1, x2, y2 = self.box
        return [round(x1), round(y1), round(x2 - x1), round(y2 - y1)]

    def moved(self, dx: float, dy: float, sx: float = 1.0, sy: float = 1.0) -> Face:
        """The same face in other pixels: x' = (x + dx) * sx, y' = (y + dy) * sy."""
        x1, y1, x2, y2 = self.box
        box = ((x1 + dx) * sx, (y1 + dy) * sy, (x2 + dx) * sx, (y2 + dy) * sy)
        landmarks = (self.landmarks + np.array([dx, dy])) * np.array([sx, sy])
        return Face(box, self.score, landmarks)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """How much of the smaller of two boxes lies inside the other (1.0: one contains the other)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def cut_square(frame: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    """The square region of `frame`, padded with black where it reaches past the edge."""
    h, w = frame.shape[:2]
    out = np.zeros((side, side, 3), dtype=np.uint8)
    sx1, sy1, sx2, sy2 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y : sy2 - y, sx1 - x : sx2 - x] = frame[sy1:sy2, sx1:sx2]
    return out
