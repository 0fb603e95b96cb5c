"""`Camera`: one configured source with lazy open, an idle policy, health for telemetry, and paced bursts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent.camera.base import CameraSource, Frame
from agent.config import CameraConfig
from agent.errors import CameraUnavailable

log = logging.getLogger(__name__)


def build_source(cfg: CameraConfig) -> CameraSource:
    """The backend named by `camera.type`; vendor libraries are imported only when it opens."""
    if cfg.type == "files":
        from agent.camera.files import FilesSource

        assert cfg.path is not None  # checked by the config
        return FilesSource(cfg.path, cfg.loop, cfg.sensor_noise)
    if cfg.type == "opencv":
        from agent.camera.opencv import OpenCvSource

        device = cfg.device if cfg.device is not None else (cfg.path or 0)
        return OpenCvSource(device, width=cfg.width, height=cfg.height, fps=cfg.fps, reopen_max_s=cfg.reopen_max_s)
    from agent.camera.picamera2 import Picamera2Source

    return Picamera2Source(cfg.camera_number, (cfg.width, cfg.height), (cfg.lores_width, cfg.lores_height), cfg.fps,
                           cfg.rotation, cfg.frame_timeout_s)


class Camera:
    """Thread-safe wrapper used by the worker: `capture()`, `burst()`, `close_if_idle()`, `health()`."""

    def __init__(
        self,
        source: CameraSource,
        fps: float = 10.0,
        idle_close_s: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.fps = fps
        self.idle_close_s = idle_close_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_used = clock()
        self.frames = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_frame_at: float | None = None

    def capture(self) -> Frame:
        """The newest frame (opens the source when needed); `CameraUnavailable` otherwise."""
        with self._lock:
            self._last_used = self._clock()
            try:
                frame = self.source.read()
            except CameraUnavailable as exc:
                self.errors += 1
                self.last_error = exc.message
                raise
            self.frames += 1
            self.last_error = None
            self.last_frame_at = frame.timestamp
            return frame

    def burst(self, timeout_s: float, fps: float | None = None, tolerate_errors_s: float = 3.0) -> Iterator[Frame]:
        """Frames at most `fps` per second for up to `timeout_s`; the caller stops iterating when satisfied.

        Short camera hiccups are ridden out; `CameraUnavailable` is raised when no frame arrives for
        `tolerate_errors_s` (or the whole burst).
        """
        interval = 1.0 / (fps or self.fps)
        start = self._clock()
        last_ok = start
        while self._clock() - start < timeout_s:
            tick = self._clock()
            try:
                yield self.capture()
                last_ok = self._clock()
            except CameraUnavailable:
                if self._clock() - last_ok >= min(tolerate_errors_s, timeout_s):
                    raise
            wait = interval - (self._clock() - tick)
            if wait > 0:
                self._sleep(min(wait, max(0.0, timeout_s - (self._clock() - start))))

    def close_if_idle(self) -> bool:
        """Close a live source unused for `idle_close_s` (an idle daemon then uses ~0 % CPU); True when closed."""
        if self.idle_close_s is None:
            return False
        with self._lock:
            if self.source.is_open and self.source.live and self._clock() - self._last_used >= self.idle_close_s:
                self.source.close()
                log.info("camera %s closed after %.0f s idle", self.source.description, self.idle_close_s)
                return True
        return False

    def check(self) -> None:
        """Read one frame now (start-up check); `CameraUnavailable` naming the source otherwise."""
        self.capture()

    def close(self) -> None:
        with self._lock:
            self.source.close()

    def health(self) -> dict[str, Any]:
        status = "error" if self.last_error else ("open" if self.source.is_open else "closed")
        return {"source": self.source.description, "status": status, "frames": self.frames, "errors": self.errors,
                "last_error": self.last_error, "last_frame_at": self.last_frame_at}
