"""Frames from a Raspberry Pi camera through picamera2: a `main` stream to crop from, a `lores` stream to detect on.

picamera2 (and libcamera) are imported only when the camera opens, so the agent runs where they are missing; every
failure on the way (import, probe, open, configure, capture) becomes `CameraUnavailable` naming the cause. Format
names follow DRM fourcc: `RGB888` is B, G, R in memory — OpenCV's order — so it is requested and checked after
configuring. The sensor mode is chosen for the full field of view (`sensor_mode.py`), the sizes, colour space and
transform libcamera settled on are read back, and the lores YUV420 is decoded with the matching matrix (`yuv.py`).

A capture never waits longer than `frame_timeout_s`: when frames stop (a loose ribbon cable, "Camera frontend has
timed out!") picamera2's capture job would wait forever and, once a wait has timed out, `stop()` and `close()` queue
behind it; `cancel_all_and_flush()` (picamera2 0.3.20) clears the queue before every stop. `close()` always releases.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from typing import Any

import numpy as np

from agent.camera.base import CameraSource, Frame
from agent.camera.sensor_mode import FieldOfView, SensorMode, choose_sensor_mode, field_of_view, pixel_array_of
from agent.camera.yuv import BT601, YuvEncoding, bgr_from_yuv420, encoding_from_names
from agent.errors import CameraUnavailable

log = logging.getLogger(__name__)

MAIN_FORMAT = "RGB888"  # B,G,R bytes: no conversion needed for OpenCV
LORES_FORMAT = "YUV420"  # the only lores format every Pi model supports
MIN_PICAMERA2 = "0.3.20"  # capture_arrays(wait=seconds) and cancel_all_and_flush()
PREFIX = "camera picamera2"


class Picamera2Source(CameraSource):
    kind = "picamera2"
    provides_detect_stream = True

    def __init__(self, camera_num: int = 0, size: tuple[int, int] = (1280, 720), lores: tuple[int, int] = (320, 180),
                 fps: float = 10.0, rotation: int = 0, frame_timeout_s: float = 3.0) -> None:
        self.camera_num = camera_num
        self.size = (size[0] // 2 * 2, size[1] // 2 * 2)  # picamera2 needs even sizes
        self.lores = (lores[0] // 2 * 2, lores[1] // 2 * 2)
        self.fps = fps
        self.rotation = rotation
        self.frame_timeout_s = frame_timeout_s
        #: what libcamera settled on, read back after configuring
        self.active_size, self.active_lores, self.encoding = self.size, self.lores, BT601
        self.sensor_mode: SensorMode | None = None
        self.field_of_view: FieldOfView | None = None
        self._modes: dict[str, list[SensorMode]] = {}  # per camera model: sensor_modes reconfigures the camera for each
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
        picamera2, transform = import_picamera2()
        try:
            cameras = picamera2.global_camera_info()
        except Exception as exc:  # libcamera's camera manager failing to start is a RuntimeError
            raise CameraUnavailable(f"{PREFIX}: libcamera cannot list the cameras ({describe(exc)}); "
                                    "check `rpicam-hello --list-cameras`, the ribbon cable, and reboot if it hangs") from None
        if len(cameras) <= self.camera_num:
            raise CameraUnavailable(f"{PREFIX}: no camera {self.camera_num} attached ({len(cameras)} found); check the ribbon cable")
        cam = self._acquire(picamera2)
        try:
            self._configure(cam, str(cameras[self.camera_num].get("Model", "")), transform)
            cam.start()
        except CameraUnavailable:
            shut_down(cam)
            raise
        except Exception as exc:  # libcamera raises many untyped errors
            shut_down(cam)
            raise CameraUnavailable(f"{PREFIX}: cannot start camera {self.camera_num}: {describe(exc)}") from None
        self._cam = cam
        fov = f"{self.field_of_view.width:.0%} of the sensor width" if self.field_of_view else "field of view unknown"
        mode = f"{self.sensor_mode.size[0]}x{self.sensor_mode.size[1]}" if self.sensor_mode else "chosen by libcamera"
        log.info("picamera2 camera %d open: sensor mode %s (%s), main %dx%d %s, lores %dx%d %s %s, rotation %d",
                 self.camera_num, mode, fov, *self.active_size, MAIN_FORMAT, *self.active_lores, LORES_FORMAT,
                 self.encoding.name, self.rotation)

    def _acquire(self, picamera2: Any) -> Any:
        registered = dict(registered_cameras(picamera2))
        try:
            return picamera2(self.camera_num)
        except Exception as exc:
            release_half_open(picamera2, registered)
            # picamera2 raises "Camera __init__ sequence did not complete." from libcamera's real reason.
            reason = describe(exc.__cause__ or exc.__context__ or exc)
            if "busy" in reason.lower():
                raise CameraUnavailable(f"{PREFIX}: camera {self.camera_num} is busy ({reason}): another process holds it "
                                        "(rpicam-hello, a second faceagent, ...)") from None
            raise CameraUnavailable(f"{PREFIX}: camera {self.camera_num} failed to open ({reason}); "
                                    "check `rpicam-hello --list-cameras` and the ribbon cable") from None

    def _configure(self, cam: Any, model: str, transform: Any) -> None:
        if model not in self._modes:
            self._modes[model] = read_sensor_modes(cam)
        modes = self._modes[model]
        chosen = choose_sensor_mode(modes, self.size, self.fps)
        wanted = transform(hflip=1, vflip=1) if self.rotation == 180 else transform()
        config = cam.create_video_configuration(
            main={"size": self.size, "format": MAIN_FORMAT},
            lores={"size": self.lores, "format": LORES_FORMAT},
            sensor={} if chosen is None else {"output_size": chosen.size, "bit_depth": chosen.bit_depth},
            transform=wanted,
            controls={"FrameRate": float(self.fps)},
            buffer_count=4,
        )
        cam.configure(config)
        self._read_back(cam.camera_configuration(), modes, wanted)

    def _read_back(self, active: dict[str, Any], modes: list[SensorMode], wanted: Any) -> None:
        main, lores = active["main"], active.get("lores")
        if main["format"] != MAIN_FORMAT:
            raise CameraUnavailable(f"{PREFIX}: main stream is {main['format']}, expected {MAIN_FORMAT} (BGR in memory)")
        if not lores or lores["format"] != LORES_FORMAT:
            raise CameraUnavailable(f"{PREFIX}: lores stream is {lores and lores['format']}, expected {LORES_FORMAT}")
        self.active_size, self.active_lores = tuple(main["size"]), tuple(lores["size"])
        if (self.active_size, self.active_lores) != (self.size, self.lores):
            log.warning("libcamera adjusted the picamera2 streams: main %dx%d -> %dx%d, lores %dx%d -> %dx%d",
                        *self.size, *self.active_size, *self.lores, *self.active_lores)
        got = active.get("transform")
        if (bool(getattr(got, "hflip", False)), bool(getattr(got, "vflip", False))) != (wanted.hflip, wanted.vflip):
            raise CameraUnavailable(f"{PREFIX}: camera {self.camera_num} cannot apply camera.rotation {self.rotation} "
                                    f"(libcamera gave {got}); set camera.rotation: 0 and turn the camera instead")
        self.encoding = lores_encoding(active.get("colour_space"))
        sensor = active.get("sensor") or {}
        size, depth = tuple(sensor.get("output_size") or ()), sensor.get("bit_depth")
        self.sensor_mode = next((m for m in modes if m.size == size and m.bit_depth == depth), None)
        self.field_of_view = field_of_view(self.sensor_mode, self.active_size, pixel_array_of(modes)) if self.sensor_mode else None

    def read(self) -> Frame:
        self.open()
        try:
            (main, lores), _metadata = self._cam.capture_arrays(["main", "lores"], wait=self.frame_timeout_s)
        except Exception as exc:
            self.close()
            if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
                raise CameraUnavailable(f"{PREFIX}: camera {self.camera_num} delivered no frame within {self.frame_timeout_s:g} s; "
                                        "check the ribbon cable (libcamera logs \"Camera frontend has timed out!\")") from None
            raise CameraUnavailable(f"{PREFIX}: capture failed: {describe(exc)}") from None
        try:
            return Frame(bgr_from_main(main), time.time(), bgr_from_yuv420(lores, self.active_lores, self.encoding))
        except ValueError as exc:
            self.close()
            raise CameraUnavailable(f"{PREFIX}: unexpected frame from camera {self.camera_num}: {exc}") from None

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            shut_down(cam)


def import_picamera2() -> tuple[Any, Any]:
    """`picamera2.Picamera2` and `libcamera.Transform`, or `CameraUnavailable` saying how to fix the installation."""
    try:
        from libcamera import Transform
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraUnavailable(f"{PREFIX}: the picamera2 library is not available ({exc}); on Raspberry Pi OS: "
                                "apt install python3-picamera2 and create the venv with --system-site-packages") from None
    except ValueError as exc:  # a C extension built for numpy 1.x (simplejpeg) imported under numpy 2
        raise CameraUnavailable(f"{PREFIX}: picamera2 cannot be imported with numpy {np.__version__} ({exc}); "
                                "apt's picamera2 is built for numpy 1.x: pip uninstall numpy (and any opencv wheel) "
                                "in the venv so apt's numpy is used") from None
    except Exception as exc:
        raise CameraUnavailable(f"{PREFIX}: importing picamera2 failed ({describe(exc)}); "
                                "reinstall python3-picamera2 and python3-libcamera") from None
    if not hasattr(Picamera2, "cancel_all_and_flush"):
        raise CameraUnavailable(f"{PREFIX}: picamera2 is too old for capture timeouts (needs {MIN_PICAMERA2} or newer): "
                                "apt upgrade python3-picamera2")
    return Picamera2, Transform


def read_sensor_modes(cam: Any) -> list[SensorMode]:
    """The camera's raw modes; empty (libcamera then chooses) when picamera2 cannot list them."""
    try:
        raw = cam.sensor_modes
    except Exception as exc:
        log.warning("picamera2 cannot list the sensor modes (%s): libcamera chooses one", describe(exc))
        return []
    return [m for m in (SensorMode.from_picamera2(entry) for entry in raw) if m is not None]


def lores_encoding(colour_space: Any) -> YuvEncoding:
    """The YCbCr matrix and range of the configured libcamera `ColorSpace`; BT.601 limited when unknown."""
    encoding = encoding_from_names(enum_name(getattr(colour_space, "ycbcrEncoding", None)),
                                   enum_name(getattr(colour_space, "range", None)))
    if encoding is None:
        log.warning("picamera2 lores colour space %s is not a known YCbCr encoding: decoding it as BT.601", colour_space)
        return BT601
    return encoding


def enum_name(value: Any) -> str:
    return str(getattr(value, "name", None) or str(value).rsplit(".", 1)[-1])


def registered_cameras(picamera2: Any) -> dict[Any, Any]:
    """picamera2's process-wide manager of Picamera2 objects (each registers in its constructor)."""
    cameras = getattr(getattr(picamera2, "_cm", None), "cameras", None)
    return cameras if isinstance(cameras, dict) else {}


def release_half_open(picamera2: Any, before: dict[Any, Any]) -> None:
    """Close what a failed `Picamera2()` left behind: its notification pipe and its registration.

    The constructor opens a pipe and registers with the camera manager before acquiring the camera; when the
    acquire fails (busy), `close()` returns early because the camera is not open, so every failed open would
    leak a file descriptor and keep the object alive.
    """
    manager = getattr(picamera2, "_cm", None)
    for index, cam in list(registered_cameras(picamera2).items()):
        if before.get(index) is cam or getattr(cam, "is_open", True):
            continue
        try:
            reader, writer = getattr(cam, "notifymeread", None), getattr(cam, "notifyme_w", None)
            if reader is not None:
                reader.close()
            if isinstance(writer, int) and writer >= 0:
                os.close(writer)
            manager.cleanup(index)  # type: ignore[union-attr]
        except Exception as exc:
            log.debug("cleaning up a failed picamera2 open: %s", describe(exc))


def shut_down(cam: Any) -> None:
    """Cancel queued capture jobs, stop and close; log what fails and go on, so the camera is always released."""
    for step in ("cancel_all_and_flush", "stop", "close"):
        try:
            getattr(cam, step)()
        except Exception as exc:
            log.warning("picamera2 %s failed: %s", step, describe(exc))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def bgr_from_main(array: np.ndarray) -> np.ndarray:
    """RGB888 arrives as HxWx3 B,G,R (XRGB8888 as HxWx4 B,G,R,X): return contiguous BGR."""
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(f"unexpected main array {array.shape} {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])
