"""A stand-in for what lies under picamera2: the `libcamera` module's types, the sensors and the ISP's output.

Derived from libcamera's Python bindings and colour space definitions, picamera2's `utils.py`, Raspberry Pi's kernel
drivers (bcm2835-isp on a Pi 4, the PiSP back end on a Pi 5) and the `sensor_modes` each camera module publishes.
`fake_picamera2` builds on it; faceagent's code is never the source of anything here.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, NamedTuple

import cv2
import numpy as np

from tests.conftest import DATA

# --- libcamera ---------------------------------------------------------------------------------------


class Transform:
    """libcamera.Transform: hflip, vflip, transpose; equality by value."""

    def __init__(self, other: Transform | None = None, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        if other is not None:
            hflip, vflip, transpose = other.hflip, other.vflip, other.transpose
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and (self.hflip, self.vflip, self.transpose) == (other.hflip, other.vflip, other.transpose)

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))

    def __repr__(self) -> str:
        return f"<libcamera.Transform '{'h' if self.hflip else ''}{'v' if self.vflip else ''}{'t' if self.transpose else ''}'>"


class ColorSpace:
    """libcamera.ColorSpace with the three standard spaces picamera2 uses (utils.COLOUR_SPACE_TABLE)."""

    class YcbcrEncoding(Enum):
        Null = 0  # "None" in C++; the Python binding renames it
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(Enum):
        Full = 0
        Limited = 1

    def __init__(self, name: str, ycbcr: ColorSpace.YcbcrEncoding, range_: ColorSpace.Range) -> None:
        self.name, self.ycbcrEncoding, self.range = name, ycbcr, range_

    def __repr__(self) -> str:
        return f"<libcamera.ColorSpace '{self.name}'>"

    @staticmethod
    def Sycc() -> ColorSpace:
        return ColorSpace("sYCC", ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Full)

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace("SMPTE170M", ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Limited)

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace("Rec709", ColorSpace.YcbcrEncoding.Rec709, ColorSpace.Range.Limited)


# ITU-R luma coefficients (Kr, Kb) of each YCbCr matrix, as the ISP applies them.
LUMA = {ColorSpace.YcbcrEncoding.Rec601: (0.299, 0.114), ColorSpace.YcbcrEncoding.Rec709: (0.2126, 0.0722),
        ColorSpace.YcbcrEncoding.Rec2020: (0.2627, 0.0593)}


# --- platforms and sensors -------------------------------------------------------------------------------


class Platform(NamedTuple):
    yuv420_align: int  # bytesperline alignment of single-plane YUV420 (so the U/V rows stay aligned too)
    rgb888_align: int


# bcm2835-isp-fmts.h (Pi 4) and pisp_be_formats.h (Pi 5).
PLATFORMS = {"pi4": Platform(yuv420_align=64, rgb888_align=32), "pi5": Platform(yuv420_align=128, rgb888_align=32)}


def bit_depth(fmt: str) -> int:
    """Bits per sample of a raw format name ("SRGGB10_CSI2P" -> 10)."""
    return int(re.sub(r"\D", "", str(fmt).split("_", maxsplit=1)[0]))


def mode(fmt: str, size: tuple[int, int], fps: float, crop: tuple[int, int, int, int]) -> dict[str, Any]:
    return {"format": fmt, "unpacked": fmt.split("_", maxsplit=1)[0], "bit_depth": bit_depth(fmt), "size": size, "fps": fps,
            "crop_limits": crop, "exposure_limits": (9, None)}


# `Picamera2.sensor_modes` as published for each module (picamera2 manual and users' printouts).
SENSORS: dict[str, list[dict[str, Any]]] = {
    "imx708": [  # Camera Module 3
        mode("SRGGB10_CSI2P", (1536, 864), 120.13, (768, 432, 3072, 1728)),
        mode("SRGGB10_CSI2P", (2304, 1296), 56.03, (0, 0, 4608, 2592)),
        mode("SRGGB10_CSI2P", (4608, 2592), 14.35, (0, 0, 4608, 2592)),
    ],
    "imx219": [  # Camera Module v2
        mode("SRGGB10_CSI2P", (640, 480), 206.65, (1000, 752, 1280, 960)),
        mode("SRGGB10_CSI2P", (1640, 1232), 41.85, (0, 0, 3280, 2464)),
        mode("SRGGB10_CSI2P", (1920, 1080), 47.57, (680, 692, 1920, 1080)),
        mode("SRGGB10_CSI2P", (3280, 2464), 21.19, (0, 0, 3280, 2464)),
        mode("SRGGB8", (640, 480), 206.65, (1000, 752, 1280, 960)),
        mode("SRGGB8", (1640, 1232), 83.7, (0, 0, 3280, 2464)),
        mode("SRGGB8", (1920, 1080), 47.57, (680, 692, 1920, 1080)),
        mode("SRGGB8", (3280, 2464), 21.19, (0, 0, 3280, 2464)),
    ],
    "ov5647": [  # Camera Module v1
        mode("SGBRG10_CSI2P", (640, 480), 58.92, (16, 0, 2560, 1920)),
        mode("SGBRG10_CSI2P", (1296, 972), 43.25, (0, 0, 2592, 1944)),
        mode("SGBRG10_CSI2P", (1920, 1080), 30.62, (348, 434, 1928, 1080)),
        mode("SGBRG10_CSI2P", (2592, 1944), 15.63, (0, 0, 2592, 1944)),
    ],
    "imx477": [  # HQ Camera
        mode("SRGGB10_CSI2P", (1332, 990), 120.05, (696, 528, 2664, 1980)),
        mode("SRGGB12_CSI2P", (2028, 1080), 50.03, (0, 440, 4056, 2160)),
        mode("SRGGB12_CSI2P", (2028, 1520), 40.01, (0, 0, 4056, 3040)),
        mode("SRGGB12_CSI2P", (4056, 3040), 10.0, (0, 0, 4056, 3040)),
    ],
}

EDGE_BAND = 0.015  # share of the sensor width painted pure blue (left) and red (right) in the scene


def pixel_array(sensor: str) -> tuple[int, int]:
    return max(m["crop_limits"][2] for m in SENSORS[sensor]), max(m["crop_limits"][3] for m in SENSORS[sensor])


def make_scene(sensor: str) -> np.ndarray:
    """What the whole pixel array sees, at a quarter of its resolution: photos, and blue/red bands at the edges."""
    width, height = (v // 4 for v in pixel_array(sensor))
    scene = cv2.resize(cv2.imread(str(DATA / "coffee.png")), (width, height), interpolation=cv2.INTER_AREA)
    face = cv2.imread(str(DATA / "astronaut.png"))
    side = height // 2
    x0, y0 = (width - side) // 2, (height - side) // 2
    scene[y0 : y0 + side, x0 : x0 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    band = max(2, round(width * EDGE_BAND))
    scene[:, :band] = (255, 0, 0)
    scene[:, width - band :] = (0, 0, 255)
    return cv2.GaussianBlur(scene, (0, 0), 1.0)  # a lens never draws a one-pixel edge


def scene_bgr(width: int, height: int) -> np.ndarray:
    """Left third blue, middle green, right red (B,G,R order) — colour order is visible in any frame."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 3] = (255, 0, 0)
    img[:, width // 3 : 2 * width // 3] = (0, 255, 0)
    img[:, 2 * width // 3 :] = (0, 0, 255)
    return img


# --- what the ISP writes -------------------------------------------------------------------------------------


def align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def encode_yuv420(bgr: np.ndarray, colour_space: ColorSpace, stride: int, rng: np.random.Generator) -> np.ndarray:
    """BGR -> planar Y'CbCr 4:2:0 with the colour space's matrix and range, rows padded to `stride` with junk."""
    height, width = bgr.shape[:2]
    kr, kb = LUMA[colour_space.ycbcrEncoding]
    b, g, r = (bgr[:, :, i].astype(np.float64) / 255 for i in range(3))
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    if colour_space.range is ColorSpace.Range.Limited:
        y8, cb8, cr8 = 16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr
    else:
        y8, cb8, cr8 = 255 * y, 128 + 255 * cb, 128 + 255 * cr
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y8, cb8, cr8)]
    u, v = (cv2.resize(p, (width // 2, height // 2), interpolation=cv2.INTER_AREA) for p in planes[1:])
    out = rng.integers(0, 256, size=stride * height * 3 // 2, dtype=np.uint8)
    out[: stride * height].reshape(height, stride)[:, :width] = planes[0]
    chroma = stride // 2 * (height // 2)
    out[stride * height : stride * height + chroma].reshape(height // 2, stride // 2)[:, : width // 2] = u
    out[stride * height + chroma :].reshape(height // 2, stride // 2)[:, : width // 2] = v
    return out.reshape(height * 3 // 2, stride)  # request.py make_array: (h * 3 // 2, stride), padding kept
