"""A thin stand-in for the `picamera2` module (the Pi camera is a true hardware boundary).

It mimics the real API surface the backend uses — `Picamera2`, `global_camera_info`,
`create_video_configuration`, `configure`, `camera_configuration`, `start`, `capture_array(s)`, `stop`,
`close` — and records every call so tests can check what was requested and that the camera is released.
Frames are a known BGR pattern in `main` (RGB888 = B,G,R bytes) and the same scene as I420 in `lores`.
"""

from __future__ import annotations

import types
from typing import Any

import cv2
import numpy as np


class Behaviour:
    def __init__(self) -> None:
        self.cameras: list[dict[str, Any]] = [{"Model": "imx708", "Location": 2, "Num": 0}]
        self.busy = False
        self.fail_start = False
        self.fail_capture_after: int | None = None
        self.main_format_override: str | None = None
        self.calls: list[str] = []
        self.instances: list[FakePicamera2] = []
        self.scene = np.zeros((8, 8, 3), np.uint8)


STATE = Behaviour()


def scene_bgr(width: int, height: int) -> np.ndarray:
    """Left third blue, middle green, right red (B,G,R order) — colour order is visible in any frame."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 3] = (255, 0, 0)
    img[:, width // 3 : 2 * width // 3] = (0, 255, 0)
    img[:, 2 * width // 3 :] = (0, 0, 255)
    return img


class FakePicamera2:
    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        STATE.calls.append("global_camera_info")
        return list(STATE.cameras)

    def __init__(self, camera_num: int = 0) -> None:
        STATE.calls.append(f"init({camera_num})")
        if camera_num >= len(STATE.cameras):
            raise IndexError("list index out of range")
        if STATE.busy:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.captures = 0
        STATE.instances.append(self)

    def create_video_configuration(self, main: dict[str, Any], lores: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        STATE.calls.append("create_video_configuration")
        return {"main": dict(main), "lores": dict(lores or {}), **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        STATE.calls.append("configure")
        self.config = config
        if STATE.main_format_override:
            self.config = {**config, "main": {**config["main"], "format": STATE.main_format_override}}

    def camera_configuration(self) -> dict[str, Any]:
        assert self.config is not None
        return self.config

    def start(self) -> None:
        STATE.calls.append("start")
        if STATE.fail_start:
            raise RuntimeError("Camera frontend has timed out!")
        self.started = True

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.config is not None and self.started
        if STATE.fail_capture_after is not None and self.captures >= STATE.fail_capture_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.captures += 1
        w, h = self.config["main"]["size"]
        lw, lh = self.config["lores"]["size"]
        main = scene_bgr(w, h)  # RGB888 is B,G,R in memory
        lores = cv2.cvtColor(scene_bgr(lw, lh), cv2.COLOR_BGR2YUV_I420)
        return main, lores

    def capture_array(self, name: str = "main") -> np.ndarray:
        main, lores = self._arrays()
        return main if name == "main" else lores

    def capture_arrays(self, names: list[str]) -> tuple[list[np.ndarray], dict[str, Any]]:
        main, lores = self._arrays()
        return [main if n == "main" else lores for n in names], {"SensorTimestamp": self.captures}

    def stop(self) -> None:
        STATE.calls.append("stop")
        self.started = False

    def close(self) -> None:
        STATE.calls.append("close")
        self.closed = True


def install(monkeypatch: Any) -> Behaviour:
    """Put the fake in sys.modules as `picamera2` and return its fresh behaviour switches."""
    global STATE
    STATE = Behaviour()
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "picamera2", module)
    return STATE
