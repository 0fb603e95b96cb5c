"""Which sensor mode gives the widest field of view at a capture size: arithmetic on picamera2's `sensor_modes`.

Left to itself libcamera picks the mode whose output size is closest to the requested one, and a Pi camera's
1920x1080 or 1536x864 modes are crops of the sensor's centre: 1280x720 then sees 59 % of a Camera Module v2's width,
67 % of a Camera Module 3's. Each mode's `crop_limits` says which part of the pixel array it reads (in full-resolution
pixels); the ISP then cuts the largest centred rectangle of the output's aspect ratio out of it and scales that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SensorMode:
    """One entry of `Picamera2.sensor_modes`: output size, bit depth, frame rate and the pixel array crop it reads."""

    size: tuple[int, int]
    bit_depth: int
    fps: float
    crop: tuple[int, int, int, int]  # x, y, width, height on the full pixel array

    @classmethod
    def from_picamera2(cls, mode: Mapping[str, Any]) -> SensorMode | None:
        """The mode described by a picamera2 dict; None for entries without size or crop (USB cameras)."""
        try:
            size, crop = tuple(mode["size"]), tuple(mode["crop_limits"])
            return cls((int(size[0]), int(size[1])), int(mode["bit_depth"]), float(mode.get("fps") or 0.0),
                       (int(crop[0]), int(crop[1]), int(crop[2]), int(crop[3])))
        except (KeyError, TypeError, ValueError, IndexError):
            return None


@dataclass(frozen=True)
class FieldOfView:
    """Share of the pixel array's width and height an output of a given aspect ratio shows."""

    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height


def visible_region(mode: SensorMode, output: tuple[int, int]) -> tuple[float, float]:
    """Width and height, in full-resolution sensor pixels, of the output's aspect ratio cut from the mode's crop."""
    _, _, crop_w, crop_h = mode.crop
    aspect = output[0] / output[1]
    return (crop_h * aspect, float(crop_h)) if crop_w / crop_h > aspect else (float(crop_w), crop_w / aspect)


def field_of_view(mode: SensorMode, output: tuple[int, int], pixel_array: tuple[int, int]) -> FieldOfView:
    """How much of the pixel array an output of size `output` shows when captured in `mode`."""
    width, height = visible_region(mode, output)
    return FieldOfView(width / pixel_array[0], height / pixel_array[1])


def pixel_array_of(modes: Iterable[SensorMode]) -> tuple[int, int]:
    """The full pixel array: the largest crop any mode reads."""
    crops = [m.crop for m in modes]
    return max(c[2] for c in crops), max(c[3] for c in crops)


def choose_sensor_mode(modes: Iterable[SensorMode], output: tuple[int, int], fps: float) -> SensorMode | None:
    """The mode showing the most of the sensor at `output`'s aspect ratio, preferring, among those:

    modes that still have at least `output`'s pixels in that region (downscale, never upscale), that reach `fps`,
    the fewest pixels (less bandwidth, faster readout), then the deeper bit depth. None when `modes` is empty.
    """
    candidates = list(modes)
    if not candidates:
        return None
    array = pixel_array_of(candidates)

    def rank(mode: SensorMode) -> tuple[float, bool, bool, int, int]:
        fov = field_of_view(mode, output, array)
        region_w, region_h = visible_region(mode, output)
        scale_w, scale_h = mode.size[0] / mode.crop[2], mode.size[1] / mode.crop[3]  # binning: sensor px per output px
        enough_pixels = region_w * scale_w >= output[0] and region_h * scale_h >= output[1]
        # FoV to the percent: modes that differ by less show the same scene.
        return (-round(fov.area, 2), not enough_pixels, mode.fps < fps, mode.size[0] * mode.size[1], -mode.bit_depth)

    return min(candidates, key=rank)
