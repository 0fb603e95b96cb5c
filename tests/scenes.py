"""Scenes composed from the public-domain photos with a fixed seed, so every face's true box is known.

Ground-truth face boxes in the source photos were labelled by hand ([x, y, w, h]); a scene pastes a
square patch around a face at a chosen scale and position, so its box in the scene is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.images import read_image
from tests.conftest import DATA

# Hand-labelled face boxes [x, y, w, h] in the original photos.
TRUTH = {
    "astronaut.png": (177, 56, 96, 122),
    "grace_hopper.jpg": (176, 106, 180, 226),
    "camera.png": (191, 114, 68, 90),
}


@dataclass
class Placed:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the scene


def background(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A smooth, textured, face-free background."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 200, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def face_patch(photo: str, context: float = 1.8) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A square patch around the photo's face and the face box inside it."""
    img = read_image(DATA / photo)
    x, y, w, h = TRUTH[photo]
    side = int(max(w, h) * context)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    pad = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REFLECT)
    patch = pad[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side].copy()
    return patch, (x - x0, y - y0, x - x0 + w, y - y0 + h)


def place(scene: np.ndarray, photo: str, face_height: float, centre: tuple[float, float]) -> Placed:
    """Paste `photo`'s face so that its true box is `face_height` tall, centred at `centre` (may cross edges)."""
    patch, (fx1, fy1, fx2, fy2) = face_patch(photo)
    scale = face_height / (fy2 - fy1)
    size = max(2, round(patch.shape[0] * scale))
    scaled = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    s = size / patch.shape[0]
    fcx, fcy = (fx1 + fx2) / 2 * s, (fy1 + fy2) / 2 * s
    ox, oy = round(centre[0] - fcx), round(centre[1] - fcy)
    h, w = scene.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, ox), max(0, oy), min(w, ox + size), min(h, oy + size)
    scene[sy1:sy2, sx1:sx2] = scaled[sy1 - oy : sy2 - oy, sx1 - ox : sx2 - ox]
    return Placed((ox + fx1 * s, oy + fy1 * s, ox + fx2 * s, oy + fy2 * s))


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
