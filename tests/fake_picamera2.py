"""A stand-in for the `picamera2` module (the Pi camera is a true hardware boundary); `install()` also puts the
`libcamera` of `fake_libcamera` in place.

Derived from picamera2's own source (`picamera2.py`, `request.py` `make_array`, `job.py`, `utils.py`, as of release
0.3.25 and later) and from Raspberry Pi's kernel drivers, never from faceagent's code. Where it matters it behaves as they do:

- `Picamera2(n)` opens a notification pipe and registers itself with the class's camera manager *before* acquiring
  the camera; a busy camera raises `RuntimeError("Camera __init__ sequence did not complete.")` whose `__cause__` is
  libcamera's "Failed to acquire camera: Device or resource busy", and the half-made object keeps its pipe open
  (`close()` returns early when the camera is not open).
- `create_video_configuration` fills picamera2's defaults (XBGR8888 main, YUV420 lores, a raw stream at the main size,
  Rec709 colour space from 1280x720 up, Smpte170m below, sizes rounded down to even) and rejects bad keys;
  `configure` runs picamera2's checks (even sizes, known formats, lores not larger than main, transform and colour
  space types, sensor keys), picks the sensor mode with libcamera's scoring (sensor > raw > main size) and reads back
  sizes, strides and the colour space, as libcamera adjusts them.
- YUV420 comes back as `(h*3/2, stride)` with the row padding kept (junk bytes in it), the stride aligned per
  platform: Pi 4 (bcm2835-isp) 64 bytes, Pi 5 (PiSP back end) 128 bytes; luma and chroma are encoded with the
  configured colour space's matrix and range; RGB888 is B,G,R bytes with the padding removed, as `make_array` does.
- Frames show the configured sensor mode's crop of a known scene (edge bands mark the full sensor width), cropped to
  the output's aspect ratio and scaled: the field of view is observable.
- Lost frames block: a capture job waits for a frame that never comes, `wait=<seconds>` raises `TimeoutError` (the
  job stays queued), and then `stop()`/`close()` block until `cancel_all_and_flush()` empties the queue. A call that
  would block forever raises `Hung` (a BaseException, so no `except Exception` hides it) after a guard delay.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import types
from typing import Any

import cv2
import numpy as np

from tests.fake_libcamera import (
    PLATFORMS,
    SENSORS,
    ColorSpace,
    Transform,
    align,
    bit_depth,
    encode_yuv420,
    make_scene,
    pixel_array,
)


class Hung(BaseException):
    """A picamera2 call that would block forever on real hardware."""


# --- picamera2 ----------------------------------------------------------------------------------------------


class Behaviour:
    """Switches a test flips; `calls` records what the code under test asked for."""

    def __init__(self) -> None:
        self.platform = "pi5"
        self.sensor = "imx708"
        self.cameras: list[dict[str, Any]] | None = None  # default: one camera of `sensor`
        self.busy = False
        self.probe_error: Exception | None = None
        self.fail_start = False
        self.configure_error: Exception | None = None
        self.stall_after: int | None = None  # frames delivered before they stop ("Camera frontend has timed out!")
        self.main_format_override: str | None = None
        self.adjust: dict[str, tuple[int, int]] = {}  # stream -> size libcamera adjusts it to
        self.scene: np.ndarray | None = None  # default: make_scene(sensor)
        self.hang_guard_s = 5.0
        self.calls: list[str] = []
        self.hung: list[str] = []
        self.instances: list[FakePicamera2] = []
        self.frames = 0
        self.rng = np.random.default_rng(18)

    def camera_list(self) -> list[dict[str, Any]]:
        if self.cameras is not None:
            return self.cameras
        return [{"Model": self.sensor, "Location": 2, "Rotation": 0, "Id": f"/base/axi/pcie@120000/rp1/i2c@88000/{self.sensor}@1a", "Num": 0}]


STATE = Behaviour()


class CameraManager:
    """picamera2's process-wide manager: every Picamera2 registers here in its constructor."""

    def __init__(self) -> None:
        self.cameras: dict[int, FakePicamera2] = {}

    def add(self, index: int, camera: FakePicamera2) -> None:
        self.cameras[index] = camera

    def cleanup(self, index: int) -> None:
        del self.cameras[index]


class Job:
    """job.Job: a future the camera event loop completes when a frame arrives."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def get_result(self, timeout: float | None = None) -> Any:
        if timeout is None and not self.future.done():
            block("a capture waiting for a frame that never comes, with no timeout")
        return self.future.result(timeout=timeout)

    def cancel(self) -> None:
        self.future.set_exception(concurrent.futures.CancelledError)


def block(what: str) -> None:
    """Stand for a call that blocks forever on the real thing: record it and fail loudly after the guard delay."""
    STATE.hung.append(what)
    threading.Event().wait(STATE.hang_guard_s)
    raise Hung(f"{what} blocked (real picamera2 would never return)")


DEFAULT: Any = object()  # picamera2's `raw={}` / `sensor={}` defaults, distinct from an explicit None


class FakePicamera2:
    _cm = CameraManager()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        STATE.calls.append("global_camera_info")
        if STATE.probe_error is not None:
            raise STATE.probe_error
        return [dict(c) for c in STATE.camera_list()]

    def __init__(self, camera_num: int = 0) -> None:
        STATE.calls.append(f"init({camera_num})")
        # The same order as picamera2: pipe, manager registration, then the acquire that may fail.
        self.notifyme_r, self.notifyme_w = os.pipe2(os.O_NONBLOCK)
        self.notifymeread = os.fdopen(self.notifyme_r, "rb")
        self._preview = None
        self.is_open = False
        camera_num = self.global_camera_info()[camera_num]["Num"]  # IndexError for a missing camera, as picamera2
        self._cm.add(camera_num, self)
        self.camera_idx = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self._job_list: list[Job] = []
        self._frames: dict[str, np.ndarray] = {}
        try:
            # libcamera lets one Camera object acquire a camera at a time, in this process or another.
            if STATE.busy or any(cam.is_open and cam.camera_idx == camera_num for cam in STATE.instances):
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            self.is_open = True
        except Exception as e:
            raise RuntimeError("Camera __init__ sequence did not complete.") from e
        self.sensor = STATE.camera_list()[camera_num]["Model"]
        self.sensor_format = max(SENSORS[self.sensor], key=lambda m: (m["size"][0] * m["size"][1], m["bit_depth"]))["format"]
        STATE.instances.append(self)

    def __del__(self) -> None:
        self.close()

    @property
    def sensor_modes(self) -> list[dict[str, Any]]:
        STATE.calls.append("sensor_modes")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")  # it configures every mode to measure it
        self.camera_config = None
        return [dict(m) for m in SENSORS[self.sensor]]

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
        if updates is None:
            return None
        valid = ("format", "size", "stride", "preserve_ar")
        for key, value in updates.items():
            if key in valid:
                defaults[key] = value
            elif key not in ignore:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        return defaults

    @staticmethod
    def _even(stream: dict[str, Any]) -> None:  # align_stream(optimal=False)
        w, h = stream["size"]
        stream["size"] = (w - w % 2, h - h % 2)

    def create_video_configuration(self, main: dict[str, Any] | None = None, lores: dict[str, Any] | None = None,
                                   raw: Any = DEFAULT, transform: Transform | None = None,
                                   colour_space: ColorSpace | None = None, buffer_count: int = 6,
                                   controls: dict[str, Any] | None = None, display: str | None = "main",
                                   encode: str | None = "main", queue: bool = True, sensor: Any = DEFAULT,
                                   use_case: str = "video") -> dict[str, Any]:
        STATE.calls.append("create_video_configuration")
        main_cfg = self._stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main or {})
        assert main_cfg is not None
        self._even(main_cfg)
        lores_cfg = self._stream({"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores)
        if lores_cfg is not None:
            self._even(lores_cfg)
        raw_cfg = self._stream({"format": self.sensor_format, "size": main_cfg["size"]}, {} if raw is DEFAULT else raw,
                               ("bit_depth", "crop_limits", "exposure_limits", "fps", "unpacked"))
        if colour_space is None:
            small = main_cfg["size"][0] < 1280 or main_cfg["size"][1] < 720
            colour_space = ColorSpace.Smpte170m() if small else ColorSpace.Rec709()
        return {"use_case": use_case, "transform": transform if transform is not None else Transform(),
                "colour_space": colour_space, "buffer_count": buffer_count, "queue": queue, "main": main_cfg,
                "lores": lores_cfg, "raw": raw_cfg,
                "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | (controls or {}),
                "sensor": {} if sensor is DEFAULT else sensor, "display": display, "encode": encode}

    @staticmethod
    def _check_stream(stream: Any, name: str) -> None:  # Picamera2.check_stream_config
        if type(stream) is not dict:
            raise RuntimeError(name + " stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream:
                raise RuntimeError(f"{key} not found in {name} stream")
        fmt = stream["format"]
        if type(fmt) is not str:
            raise RuntimeError("format in " + name + " stream should be a string")
        known = ("YUV420", "YVU420", "NV12", "NV21", "YUYV", "UYVY", "RGB888", "BGR888", "XBGR8888", "XRGB8888")
        if name != "raw" and fmt not in known:
            raise RuntimeError("Bad format " + fmt + " in stream " + name)
        size = stream["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def _check(self, config: dict[str, Any]) -> None:  # Picamera2.check_camera_config
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        if not isinstance(config["colour_space"], ColorSpace):
            raise RuntimeError("Colour space has incorrect type")
        if not isinstance(config["transform"], Transform):
            raise RuntimeError("Transform has incorrect type")
        if config.get("sensor"):
            bad = set(config["sensor"]) - {"bit_depth", "output_size"}
            if bad:
                raise RuntimeError(f"Unexpected keys {bad} in sensor configuration")
        self._check_stream(config["main"], "main")
        if config["lores"] is not None:
            self._check_stream(config["lores"], "lores")
            (mw, mh), (lw, lh) = config["main"]["size"], config["lores"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if STATE.platform == "pi4" and config["lores"]["format"] not in ("YUV420", "YVU420", "NV12", "NV21"):
                raise RuntimeError("lores stream must be YUV")
        if config["raw"] is not None:
            self._check_stream(config["raw"], "raw")

    def _sensor_mode(self, config: dict[str, Any]) -> dict[str, Any]:
        """The mode libcamera picks: picamera2's copy of libcamera's scoring, sensor config > raw > main size."""
        sensor, raw = config.get("sensor") or {}, config.get("raw")
        depth = sensor.get("bit_depth") or (bit_depth(raw["format"]) if raw and "format" in raw else bit_depth(self.sensor_format))
        size = sensor.get("output_size") or (raw["size"] if raw and "size" in raw else config["main"]["size"])

        def score(m: dict[str, Any]) -> float:
            def fmt(desired: float, actual: float) -> float:
                d = desired - actual
                return -d / 4 if d < 0 else d * 2

            ar, mode_ar = size[0] / size[1], m["size"][0] / m["size"][1]
            return fmt(size[0], m["size"][0]) + fmt(size[1], m["size"][1]) + 1500 * fmt(ar, mode_ar) + 500 * abs(depth - m["bit_depth"])

        return min(SENSORS[self.sensor], key=score)

    def configure(self, camera_config: dict[str, Any]) -> None:
        STATE.calls.append("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        self._check(config)
        if STATE.configure_error is not None:
            raise STATE.configure_error
        chosen = self._sensor_mode(config)
        platform = PLATFORMS[STATE.platform]
        for name in ("main", "lores"):
            stream = config[name]
            if stream is None:
                continue
            if STATE.main_format_override and name == "main":
                stream["format"] = STATE.main_format_override
            stream["size"] = STATE.adjust.get(name, stream["size"])
            w, h = stream["size"]
            if stream["format"] in ("YUV420", "YVU420"):
                stream["stride"], stream["framesize"] = align(w, platform.yuv420_align), align(w, platform.yuv420_align) * h * 3 // 2
            else:
                bpp = 4 if stream["format"].startswith("X") else 3
                stream["stride"] = align(w * bpp, platform.rgb888_align if bpp == 3 else 64)
                stream["framesize"] = stream["stride"] * h
        if config["raw"] is not None:
            config["raw"] = {**config["raw"], "format": chosen["format"], "size": chosen["size"]}
        config["sensor"] = {"bit_depth": chosen["bit_depth"], "output_size": chosen["size"]}
        self.mode = chosen
        self.camera_config = config
        self._frames = {}

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start(self) -> None:
        STATE.calls.append("start")
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if STATE.fail_start:
            raise RuntimeError("Failed to start camera: Connection timed out")
        self.started = True

    # --- frames -------------------------------------------------------------------------------------------

    def _view(self, size: tuple[int, int]) -> np.ndarray:
        """The mode's crop of the scene, cropped to the output aspect ratio (centred) and scaled to `size`."""
        scene = STATE.scene if STATE.scene is not None else make_scene(self.sensor)
        full_w, full_h = pixel_array(self.sensor)
        x, y, w, h = self.mode["crop_limits"]
        out_ar = size[0] / size[1]
        cw, ch = (h * out_ar, h) if w / h > out_ar else (w, w / out_ar)
        cx, cy = x + (w - cw) / 2, y + (h - ch) / 2
        sx, sy = scene.shape[1] / full_w, scene.shape[0] / full_h
        crop = scene[round(cy * sy) : round((cy + ch) * sy), round(cx * sx) : round((cx + cw) * sx)]
        image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        transform = self.camera_config["transform"] if self.camera_config else Transform()
        if transform.hflip:
            image = image[:, ::-1]
        if transform.vflip:
            image = image[::-1]
        return np.ascontiguousarray(image)

    def _array(self, name: str) -> np.ndarray:
        if name not in self._frames:
            assert self.camera_config is not None
            stream = self.camera_config[name]
            if stream is None:
                raise RuntimeError(f"Stream {name!r} is not defined")
            image = self._view(stream["size"])
            if stream["format"] in ("YUV420", "YVU420"):
                array = encode_yuv420(image, self.camera_config["colour_space"], stream["stride"], STATE.rng)
            elif stream["format"] in ("RGB888", "XRGB8888"):  # B,G,R(,X) in memory
                array = image if stream["format"] == "RGB888" else np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
            else:  # BGR888 / XBGR8888: R,G,B(,X) in memory
                rgb = image[:, :, ::-1]
                array = np.ascontiguousarray(rgb if stream["format"] == "BGR888" else np.dstack([rgb, np.full(image.shape[:2], 255, np.uint8)]))
            self._frames[name] = array
        return self._frames[name].copy()

    def _frame_available(self) -> bool:
        return self.started and (STATE.stall_after is None or STATE.frames < STATE.stall_after)

    def capture_arrays(self, names: list[str] | None = None, wait: Any = None, signal_function: Any = None) -> Any:
        """dispatch_functions: the job completes when a frame arrives; `wait` is None/True/False/seconds."""
        names = names or ["main"]
        STATE.calls.append(f"capture_arrays(wait={wait!r})")
        job = Job(names)
        if self._frame_available():
            STATE.frames += 1
            job.future.set_result(([self._array(n) for n in names], {"SensorTimestamp": STATE.frames}))
        else:
            self._job_list.append(job)
        if wait is None:
            wait = signal_function is None
        if wait is False:
            return job
        return job.get_result(timeout=None if wait is True else wait)

    def capture_array(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> Any:
        result = self.capture_arrays([name], wait, signal_function)
        return result[0][0] if isinstance(result, tuple) else result

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self) -> None:
        STATE.calls.append("cancel_all_and_flush")
        for job in self._job_list:
            job.cancel()
        self._job_list = []

    def stop(self) -> None:
        STATE.calls.append("stop")
        if not self.started:
            return
        if self._job_list:  # the stop job queues behind the capture job that never finishes
            block("stop() behind a timed-out capture job")
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        STATE.calls.append("close")
        self.stop()
        self._cm.cleanup(self.camera_idx)
        self.is_open = False
        self.closed = True
        self.notifymeread.close()
        os.close(self.notifyme_w)


def install(monkeypatch: Any, platform: str = "pi5", sensor: str = "imx708") -> Behaviour:
    """Put the fakes in sys.modules as `picamera2` and `libcamera`; return fresh behaviour switches."""
    global STATE
    STATE = Behaviour()
    STATE.platform, STATE.sensor = platform, sensor
    FakePicamera2._cm = CameraManager()
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = Transform  # type: ignore[attr-defined]
    libcamera.ColorSpace = ColorSpace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return STATE
