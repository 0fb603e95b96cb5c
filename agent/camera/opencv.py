"""Frames from OpenCV: a V4L2 device (index or /dev/videoN), an RTSP/HTTP stream, or a video file.

A capture must show "now": live sources keep a small driver buffer, so stale frames are dropped before
reading after a pause. Read failures close the device; it is reopened with capped exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2

from agent.camera.base import CameraSource, Frame
from agent.errors import CameraUnavailable

log = logging.getLogger(__name__)

STALE_AFTER_S = 0.5  # after a pause this long, buffered frames are old
DRAIN_FRAMES = 4  # V4L2 keeps up to 4 buffers even with CAP_PROP_BUFFERSIZE=1 on some drivers


class OpenCvSource(CameraSource):
    kind = "opencv"

    def __init__(
        self,
        device: str | int,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 10.0,
        reopen_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        capture_factory: Callable[[str | int], cv2.VideoCapture] | None = None,
    ) -> None:
        self.device: str | int = int(device) if isinstance(device, str) and device.isdigit() else device
        # A video file is not live: it starts again at its end and has no stale buffer to drop.
        self.live = not (isinstance(self.device, str) and not self.device.startswith(("rtsp://", "http://", "https://", "/dev/")))
        self.width, self.height, self.fps = width, height, fps
        self.reopen_max_s = reopen_max_s
        self._clock = clock
        self._factory = capture_factory or cv2.VideoCapture
        self._cap: cv2.VideoCapture | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_read = 0.0

    @property
    def description(self) -> str:
        return f"opencv {self.device}"

    @property
    def is_open(self) -> bool:
        return self._cap is not None

    def _backoff(self) -> float:
        return float(min(self.reopen_max_s, 0.5 * 2 ** max(0, self._failures - 1)))

    def _fail(self, why: str) -> CameraUnavailable:
        self._failures += 1
        self._retry_at = self._clock() + self._backoff()
        self.close()
        log.warning("camera %s: %s; next try in %.1f s", self.device, why, self._backoff())
        return CameraUnavailable(f"camera opencv {self.device}: {why}")

    def open(self) -> None:
        if self._cap is not None:
            return
        wait = self._retry_at - self._clock()
        if wait > 0:
            raise CameraUnavailable(f"camera opencv {self.device}: unavailable, next try in {wait:.1f} s")
        cap = self._factory(self.device)
        if not cap.isOpened():
            cap.release()
            raise self._fail("cannot be opened")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self._last_read = 0.0

    def read(self) -> Frame:
        self.open()
        assert self._cap is not None
        now = self._clock()
        if self.live and now - self._last_read > STALE_AFTER_S:
            for _ in range(DRAIN_FRAMES):
                self._cap.grab()
        ok, image = self._cap.read()
        if not ok or image is None:
            if not self.live:
                # A video file at its end starts again.
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
            if not ok or image is None:
                raise self._fail("read failed")
        self._failures = 0
        self._last_read = self._clock()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return Frame(image, time.time())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
