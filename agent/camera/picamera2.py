"""Frames from a Raspberry Pi camera through picamera2: a `main` stream to crop from, a `lores` stream to detect on.

picamera2 (and libcamera) are imported only when the camera opens, so the agent runs where they are
missing. Format names follow DRM fourcc: `RGB888` is B, G, R in memory — OpenCV's order — so it is
requested explicitly and checked after configuring. `close()` always releases the camera.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import numpy as np

from agent.camera.base import CameraSource, Frame
from agent.errors import CameraUnavailable

log = logging.getLogger(__name__)

MAIN_FORMAT = "RGB888"  # B,G,R bytes: no conversion needed for OpenCV
LORES_FORMAT = "YUV420"  # the only lores format every Pi model supports


class Picamera2Source(CameraSource):
    kind = "picamera2"
    provides_detect_stream = True

    def __init__(self, camera_num: int = 0, size: tuple[int, int] = (1280, 720), lores: tuple[int, int] = (320, 240), fps: float = 10.0) -> None:
        self.camera_num = camera_num
        self.size = size
        self.lores = (lores[0] // 2 * 2, lores[1] // 2 * 2)  # YUV420 needs even sizes
        self.fps = fps
        self._cam: Any = None

    @property
    def description(self) -> str:
        return f"picamera2 camera {self.camera_num}"

    @property
    def is_open(self) -> bool:
        return self._cam is not None

    def open(self) -> None:
        if self._cam is not None:
            return
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraUnavailable(
                f"camera picamera2: the picamera2 library is not available ({exc}); on Raspberry Pi OS: "
                "apt install python3-picamera2 and create the venv with --system-site-packages"
            ) from None
        cameras = Picamera2.global_camera_info()
        if len(cameras) <= self.camera_num:
            raise CameraUnavailable(f"camera picamera2: no camera {self.camera_num} attached ({len(cameras)} found); check the ribbon cable")
        try:
            cam = Picamera2(self.camera_num)
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraUnavailable(
                f"camera picamera2: camera {self.camera_num} is busy or failed to open ({exc}); is another process using it?"
            ) from None
        try:
            config = cam.create_video_configuration(
                main={"size": self.size, "format": MAIN_FORMAT},
                lores={"size": self.lores, "format": LORES_FORMAT},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
            )
            cam.configure(config)
            active = cam.camera_configuration()
            if active["main"]["format"] != MAIN_FORMAT:
                raise CameraUnavailable(f"camera picamera2: main stream is {active['main']['format']}, expected {MAIN_FORMAT} (BGR in memory)")
            cam.start()
        except CameraUnavailable:
            cam.close()
            raise
        except Exception as exc:  # libcamera raises many untyped errors
            cam.close()
            raise CameraUnavailable(f"camera picamera2: cannot start camera {self.camera_num}: {exc}") from None
        self._cam = cam
        log.info("picamera2 camera %d open: main %dx%d %s, lores %dx%d %s", self.camera_num, *self.size, MAIN_FORMAT, *self.lores, LORES_FORMAT)

    def read(self) -> Frame:
        self.open()
        try:
            (main, lores), _metadata = self._cam.capture_arrays(["main", "lores"])
        except Exception as exc:
            self.close()
            raise CameraUnavailable(f"camera picamera2: capture failed: {exc}") from None
        return Frame(bgr_from_main(main), time.time(), bgr_from_yuv420(lores, self.lores))

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        except Exception as exc:
            log.warning("picamera2 stop failed: %s", exc)
        finally:
            cam.close()


def bgr_from_main(array: np.ndarray) -> np.ndarray:
    """RGB888 arrives as HxWx3 B,G,R (XRGB8888 as HxWx4 B,G,R,X): return contiguous BGR."""
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise CameraUnavailable(f"camera picamera2: unexpected main array {array.shape} {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def bgr_from_yuv420(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A YUV420 (I420) lores buffer of (h*3/2, stride) -> BGR w x h."""
    width, height = size
    if array.ndim != 2 or array.shape[0] != height * 3 // 2:
        raise CameraUnavailable(f"camera picamera2: unexpected lores array {array.shape} for {width}x{height} YUV420")
    return cv2.cvtColor(np.ascontiguousarray(array[:, :width]), cv2.COLOR_YUV2BGR_I420)
