"""Scenes composed from the public-domain test photos with a fixed seed, so every face's true box is known.

Ground-truth face boxes in the source photos were labelled by hand ([x, y, w, h]); a scene pastes a
square patch around a face at a chosen scale, position, roll, brightness and blur, so its box in the
scene is exact. Used by the tests and by `faceagent bench --recall` (in a source checkout, where the
photos are in tests/data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.images import decode_image, encode_jpeg, read_image

CHECKOUT_PHOTOS = Path(__file__).resolve().parents[2] / "tests" / "data"
# A source checkout has all six photos; an installed package ships three of them (demo_photos).
PHOTOS_DIR = CHECKOUT_PHOTOS if CHECKOUT_PHOTOS.is_dir() else Path(__file__).resolve().parent / "demo_photos"

# Hand-labelled face boxes [x, y, w, h] in the original photos.
TRUTH = {
    "astronaut.png": (177, 56, 96, 122),
    "grace_hopper.jpg": (176, 106, 180, 226),
    "camera.png": (191, 114, 68, 90),
}
# Photos without a human face, used as cluttered backgrounds.
NO_FACE = ("chelsea.png", "coffee.png", "rocket.jpg")


@dataclass
class Placed:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the scene (upright box around a rolled face)
    face_px: float = 0.0  # shorter side of the face box before any roll: the size `quality.min_face_px` is about
    photo: str = ""


def photo(name: str) -> np.ndarray:
    """One of the test photos (a source checkout's tests/data, else the ones the package ships)."""
    return read_image(PHOTOS_DIR / name)


def background(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A smooth, textured, face-free background."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 200, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def photo_background(name: str, width: int, height: int) -> np.ndarray:
    """A face-free photo scaled to cover width x height (centre cut): clutter for false positives."""
    img = photo(name)
    scale = max(width / img.shape[1], height / img.shape[0])
    big = cv2.resize(img, (math.ceil(img.shape[1] * scale), math.ceil(img.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y0 : y0 + height, x0 : x0 + width].copy()


def face_patch(name: str, context: float = 1.8) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A square patch around the photo's face and the face box inside it."""
    img = photo(name)
    x, y, w, h = TRUTH[name]
    side = int(max(w, h) * context)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    pad = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REFLECT)
    patch = pad[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side].copy()
    return patch, (x - x0, y - y0, x - x0 + w, y - y0 + h)


def paste(scene: np.ndarray, tile: np.ndarray, anchor: tuple[float, float], centre: tuple[float, float]) -> tuple[float, float]:
    """Copy `tile` into `scene` (clipped) so that its point `anchor` lands on `centre`, to the pixel; where it landed."""
    ox, oy = round(centre[0] - anchor[0]), round(centre[1] - anchor[1])
    h, w = scene.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, ox), max(0, oy), min(w, ox + tile.shape[1]), min(h, oy + tile.shape[0])
    scene[sy1:sy2, sx1:sx2] = tile[sy1 - oy : sy2 - oy, sx1 - ox : sx2 - ox]
    return ox + anchor[0], oy + anchor[1]


def place(scene: np.ndarray, name: str, face_height: float, centre: tuple[float, float]) -> Placed:
    """Paste `name`'s face so that its true box is `face_height` tall, centred at `centre` (may cross edges)."""
    patch, (fx1, fy1, fx2, fy2) = face_patch(name)
    scale = face_height / (fy2 - fy1)
    size = max(2, round(patch.shape[0] * scale))
    scaled = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    s = size / patch.shape[0]
    hw, hh = (fx2 - fx1) * s / 2, (fy2 - fy1) * s / 2
    cx, cy = paste(scene, scaled, ((fx1 + fx2) / 2 * s, (fy1 + fy2) / 2 * s), centre)
    return Placed((cx - hw, cy - hh, cx + hw, cy + hh), 2 * min(hw, hh), name)


def place_photo(
    scene: np.ndarray, name: str, face_px: float, centre: tuple[float, float], *,
    flip: bool = False, roll_deg: float = 0.0, gain: float = 1.0, blur_px: float = 0.0,
) -> Placed:
    """Paste the whole photo, scaled so its face's shorter side is `face_px`, with the face centred at `centre`.

    The whole photo keeps the real context around the face (hair, shoulders, body, background),
    which the detector leans on for small faces. `flip` mirrors it, `roll_deg` turns it in the image
    plane about the face centre (the true box is then the upright box around the turned face box),
    `gain` scales brightness, `blur_px` is a Gaussian sigma in scene pixels. Returns the true face box.
    """
    img = photo(name)
    x, y, w, h = TRUTH[name]
    if flip:
        img = img[:, ::-1].copy()
        x = img.shape[1] - x - w
    scale = face_px / min(w, h)
    tile = cv2.resize(img, (max(2, round(img.shape[1] * scale)), max(2, round(img.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    fcx, fcy = (x + w / 2) * scale, (y + h / 2) * scale
    hw, hh = w * scale / 2, h * scale / 2
    if roll_deg:
        turn = cv2.getRotationMatrix2D((fcx, fcy), roll_deg, 1.0)
        tile = cv2.warpAffine(tile, turn, (tile.shape[1], tile.shape[0]), borderMode=cv2.BORDER_REFLECT)
        c, n = abs(math.cos(math.radians(roll_deg))), abs(math.sin(math.radians(roll_deg)))
        hw, hh = hw * c + hh * n, hw * n + hh * c
    if gain != 1.0:
        tile = np.clip(tile.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    if blur_px > 0:
        tile = cv2.GaussianBlur(tile, (0, 0), blur_px)
    cx, cy = paste(scene, tile, (fcx, fcy), centre)
    return Placed((cx - hw, cy - hh, cx + hw, cy + hh), face_px, name)


@dataclass
class Scene:
    """A composed frame and the true boxes of its faces."""

    image: np.ndarray
    faces: list[Placed]


# Face sizes of the recall scenes (shorter box side, capture pixels): bins and their share of the faces.
SIZE_MIX = ((32, 48, 0.15), (48, 64, 0.3), (64, 96, 0.35), (96, 200, 0.2))


def tile_rect(name: str, face_px: float, centre: tuple[float, float]) -> tuple[float, float, float, float]:
    """Where `place_photo` would paste the photo (unclipped), to keep tiles from covering each other."""
    img = photo(name)
    x, y, w, h = TRUTH[name]
    scale = face_px / min(w, h)
    left = centre[0] - (x + w / 2) * scale
    top = centre[1] - (y + h / 2) * scale
    return left, top, left + img.shape[1] * scale, top + img.shape[0] * scale


def recall_scenes(count: int, width: int = 1280, height: int = 720, seed: int = 13, max_faces: int = 5) -> list[Scene]:
    """`count` frames with 0-`max_faces` people each, faces of every size in SIZE_MIX, varied in roll, light and blur.

    Each person is a whole test photo zoomed to the face size wanted (as if standing at that
    distance), its face inside the frame; photos never cover each other. Backgrounds alternate
    between smooth noise and the face-free photos (a cat, a cup, a rocket), so false positives have
    something to bite on; every frame is JPEG-coded once, as a camera's would be.
    """
    rng = np.random.default_rng(seed)
    names = sorted(TRUTH)
    bins = [(lo, hi) for lo, hi, _ in SIZE_MIX]
    shares = np.asarray([p for _, _, p in SIZE_MIX])
    scenes = []
    for index in range(count):
        kind = index % 4
        scene = background(width, height, seed + index) if kind == 0 else photo_background(NO_FACE[kind - 1], width, height)
        placed: list[Placed] = []
        taken: list[tuple[float, float, float, float]] = []
        for _ in range(int(rng.integers(0, max_faces + 1))):
            name = names[int(rng.integers(len(names)))]
            lo, hi = bins[int(rng.choice(len(bins), p=shares / shares.sum()))]
            face_px = float(rng.uniform(lo, hi))
            for _attempt in range(30):
                centre = (float(rng.uniform(face_px, width - face_px)), float(rng.uniform(face_px, height - face_px)))
                rect = tile_rect(name, face_px, centre)
                if not any(_overlaps(rect, other) for other in taken):
                    truth = place_photo(
                        scene, name, face_px, centre, flip=bool(rng.integers(2)), roll_deg=float(rng.uniform(-10, 10)),
                        gain=float(rng.uniform(0.7, 1.3)), blur_px=float(rng.uniform(0, 1.0)),
                    )
                    placed.append(truth)
                    taken.append(rect)
                    break
        scenes.append(Scene(decode_image(encode_jpeg(scene, 85)), placed))
    return scenes


def one_person_scenes(count: int, width: int = 1280, height: int = 720, seed: int = 5) -> list[Scene]:
    """Frames with one frontal face of 80-240 px near the middle, as during an enrollment."""
    rng = np.random.default_rng(seed)
    names = [name for name in ("astronaut.png", "grace_hopper.jpg") if (PHOTOS_DIR / name).is_file()]
    out = []
    for index in range(count):
        scene = background(width, height, seed + index)
        face_px = float(rng.uniform(80, 240))
        centre = (width / 2 + float(rng.uniform(-200, 200)), height / 2 + float(rng.uniform(-80, 80)))
        truth = place_photo(scene, names[index % len(names)], face_px, centre)
        out.append(Scene(scene, [truth]))
    return out


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
