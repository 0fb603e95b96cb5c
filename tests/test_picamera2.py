"""The Raspberry Pi camera path against a picamera2 fake that behaves like picamera2 on a Pi 4 and a Pi 5.

Per defect: padded YUV420 decoded with the right matrix, captures that cannot hang, import/probe failures as
`CameraUnavailable`, the full field of view, no descriptor leak on a busy camera, and the sizes, device, shape and
rotation settings. The `hw` test runs the same colour check on a real Pi (FACEAGENT_HW=1).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.camera.base import Frame
from agent.camera.camera import Camera, build_source
from agent.camera.picamera2 import Picamera2Source
from agent.camera.sensor_mode import SensorMode, choose_sensor_mode, field_of_view, pixel_array_of
from agent.camera.yuv import BT601, BT709, bgr_from_yuv420
from agent.config import Picamera2Camera, config_from_mapping
from agent.errors import CameraUnavailable, ConfigError
from tests import fake_libcamera, fake_picamera2

FAST = 0.05  # frame timeout (s) in tests: the fake's lost frames never arrive, so every wait runs to its end


def lores_error(frame: Frame) -> tuple[float, float]:
    """Mean absolute difference between the lores frame and the main frame scaled down to it, and the share of
    pixels off by more than 40 in some channel: both streams show the same instant of the same scene."""
    assert frame.detect_image is not None
    height, width = frame.detect_image.shape[:2]
    reference = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA).astype(np.int16)
    diff = np.abs(frame.detect_image.astype(np.int16) - reference)
    return float(diff.mean()), float((diff.max(axis=2) > 40).mean())


def released_in_order(calls: list[str]) -> bool:
    """The last release cancelled the queued jobs before stopping, then closed."""
    last = len(calls) - 1 - calls[::-1].index("cancel_all_and_flush")
    return calls[last : last + 3] == ["cancel_all_and_flush", "stop", "close"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- 1. padded YUV420, the right chroma order and matrix ------------------------------------------------------


@pytest.mark.parametrize(("platform", "main", "lores"), [
    ("pi5", (1280, 720), (320, 180)),  # stride 384: the default sizes on a Pi 5
    ("pi5", (1280, 720), (480, 270)),  # stride 512, an odd number of chroma rows
    ("pi4", (1280, 720), (480, 270)),  # stride 512 on a Pi 4 too
    ("pi4", (1280, 720), (320, 180)),  # no padding: only the matrix (Rec709) matters
    ("pi5", (640, 480), (320, 240)),  # below 1280x720 picamera2 picks SMPTE170M (BT.601)
])
def test_lores_frame_matches_the_main_frame(monkeypatch: pytest.MonkeyPatch, platform: str, main: tuple[int, int],
                                            lores: tuple[int, int]) -> None:
    state = fake_picamera2.install(monkeypatch, platform=platform)
    source = Picamera2Source(0, main, lores, 10.0)
    try:
        frame = source.read()
    finally:
        source.close()
    stride = state.instances[0].camera_config["lores"]["stride"]
    mean, off = lores_error(frame)
    print(f"{platform} lores {lores[0]}x{lores[1]} stride {stride}: mean difference {mean:.2f}, {off:.1%} of pixels off by > 40")
    assert frame.detect_image is not None and frame.detect_image.shape == (lores[1], lores[0], 3)
    assert mean < 3.0 and off < 0.03


def padded_i420(y: np.ndarray, u: np.ndarray, v: np.ndarray, stride: int) -> np.ndarray:
    """Planes laid out as picamera2 returns them, padding filled with 0xEE."""
    height, width = y.shape
    out = np.full(stride * height * 3 // 2, 0xEE, np.uint8)
    out[: stride * height].reshape(height, stride)[:, :width] = y
    quarter = stride // 2 * (height // 2)
    out[stride * height : stride * height + quarter].reshape(height // 2, stride // 2)[:, : width // 2] = u
    out[stride * height + quarter :].reshape(height // 2, stride // 2)[:, : width // 2] = v
    return out.reshape(height * 3 // 2, stride)


def test_yuv420_padding_is_cut_after_the_planes_are_found() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(16, 236, (6, 10), dtype=np.uint8)
    u, v = (rng.integers(16, 241, (3, 5), dtype=np.uint8) for _ in range(2))
    packed = padded_i420(y, u, v, 10)
    for stride in (16, 64, 128):  # the same picture with row padding: identical pixels
        assert np.array_equal(bgr_from_yuv420(padded_i420(y, u, v, stride), (10, 6), BT601), bgr_from_yuv420(packed, (10, 6), BT601))
    # Unpadded BT.601 agrees with OpenCV's own I420 conversion to the rounding.
    opencv = cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420)
    assert np.abs(opencv.astype(int) - bgr_from_yuv420(packed, (10, 6), BT601).astype(int)).max() <= 1


def test_u_comes_before_v() -> None:
    # Pure blue in BT.709 limited range: Y=32, Cb=240, Cr=118. Read as YV12 (V first) it would come out red-ish.
    y, u, v = np.full((2, 2), 32, np.uint8), np.full((1, 1), 240, np.uint8), np.full((1, 1), 118, np.uint8)
    b, g, r = (int(c) for c in bgr_from_yuv420(padded_i420(y, u, v, 64), (2, 2), BT709)[0, 0])
    assert b > 250 and g < 5 and r < 5


def test_the_matrix_is_the_configured_one() -> None:
    # Textbook limited-range inverses: BT.709 R = 1.164(Y-16) + 1.793(Cr-128), G = 1.164(Y-16) - 0.213(Cb-128)
    # - 0.533(Cr-128), B = 1.164(Y-16) + 2.112(Cb-128); BT.601 uses 1.596, 0.392, 0.813 and 2.017.
    y, u, v = np.full((2, 2), 120, np.uint8), np.full((1, 1), 100, np.uint8), np.full((1, 1), 170, np.uint8)
    as_709 = bgr_from_yuv420(padded_i420(y, u, v, 64), (2, 2), BT709)[0, 0].astype(int)
    as_601 = bgr_from_yuv420(padded_i420(y, u, v, 64), (2, 2), BT601)[0, 0].astype(int)
    assert np.abs(as_709 - (62, 105, 196)).max() <= 1
    assert np.abs(as_601 - (65, 98, 188)).max() <= 1


def test_main_stream_keeps_the_bgr_order(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.scene = fake_libcamera.scene_bgr(1536, 864)
    source = Picamera2Source(0, (640, 360), (320, 180), fps=15)
    frame = source.read()
    config = state.instances[0].camera_config
    assert config["main"]["format"] == "RGB888" and config["lores"]["format"] == "YUV420"
    assert config["controls"]["FrameRate"] == 15.0
    assert tuple(frame.image[10, 10]) == (255, 0, 0) and tuple(frame.image[10, 630]) == (0, 0, 255)  # blue left, red right
    assert frame.detect_image is not None
    b, g, r = (int(c) for c in frame.detect_image[90, 10])
    assert b > 200 and g < 60 and r < 60
    assert frame.detect_scale == (2.0, 2.0)
    source.close()
    assert released_in_order(state.calls) and state.instances[0].closed


# --- 2. a capture cannot hang -------------------------------------------------------------------------------------


def test_lost_frames_time_out_and_the_camera_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.stall_after = 1  # one frame, then "Camera frontend has timed out!"
    source = Picamera2Source(frame_timeout_s=FAST)
    source.read()
    with pytest.raises(CameraUnavailable, match=r"no frame within 0\.05 s; check the ribbon cable"):
        source.read()
    assert state.hung == []  # neither the capture nor stop/close waited forever
    assert "capture_arrays(wait=0.05)" in state.calls
    assert released_in_order(state.calls)
    assert not source.is_open and state.instances[0].closed
    state.stall_after = None  # cable pushed back in: the next read opens again
    assert source.read().image.shape == (720, 1280, 3)
    source.close()


def test_dead_camera_at_start_up_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.stall_after = 0
    camera = Camera(Picamera2Source(frame_timeout_s=FAST))
    with pytest.raises(CameraUnavailable, match="no frame within"):
        camera.check()
    assert state.hung == [] and all(cam.closed for cam in state.instances)
    assert camera.health()["status"] == "error"


@pytest.mark.parametrize("failure", ["configure", "start", "format", "capture", "sensor_modes"])
def test_every_failure_is_camera_unavailable_and_releases(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    state = fake_picamera2.install(monkeypatch)
    if failure == "configure":
        state.configure_error = RuntimeError("Configuration failed: {'main': ...}")
    elif failure == "start":
        state.fail_start = True
    elif failure == "format":
        state.main_format_override = "BGR888"
    elif failure == "capture":
        state.stall_after = 0
    else:
        def no_modes(self: object) -> None:
            raise RuntimeError("Camera must be stopped before configuring")

        monkeypatch.setattr(fake_picamera2.FakePicamera2, "sensor_modes", property(no_modes))
    source = Picamera2Source(frame_timeout_s=FAST)
    if failure == "sensor_modes":  # libcamera then chooses the mode: still a working camera
        assert source.read().image.shape == (720, 1280, 3)
        source.close()
        return
    with pytest.raises(CameraUnavailable):
        source.read()
    assert state.instances and all(cam.closed for cam in state.instances) and state.hung == []
    assert not source.is_open
    state.configure_error, state.fail_start, state.main_format_override, state.stall_after = None, False, None, None
    assert source.read().image.shape == (720, 1280, 3)  # released: a new open works
    source.close()


# --- 3. import and probe failures --------------------------------------------------------------------------------


def broken_picamera2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, statement: str) -> None:
    """A `picamera2` package on sys.path whose import fails the way the installed one can."""
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(statement + "\n")
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = fake_libcamera.Transform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_picamera2_missing_is_camera_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as off a Pi
    with pytest.raises(CameraUnavailable, match="apt install python3-picamera2"):
        Picamera2Source().open()


def test_numpy_mismatch_at_import_is_camera_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # What apt's simplejpeg (built for numpy 1.x) raises when picamera2 imports it under numpy 2.
    broken_picamera2(monkeypatch, tmp_path, 'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
                                            'Expected 96 from C header, got 88 from PyObject")')
    with pytest.raises(CameraUnavailable, match=r"cannot be imported with numpy .*pip uninstall numpy") as info:
        Picamera2Source().open()
    assert "binary incompatibility" in info.value.message


def test_any_other_import_failure_is_camera_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken_picamera2(monkeypatch, tmp_path, 'raise RuntimeError("libcamera.so.0.3: cannot open shared object file")')
    with pytest.raises(CameraUnavailable, match=r"importing picamera2 failed .*reinstall python3-picamera2"):
        Picamera2Source().open()


def test_old_picamera2_without_cancellable_captures_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_picamera2.install(monkeypatch)
    monkeypatch.delattr(fake_picamera2.FakePicamera2, "cancel_all_and_flush")
    with pytest.raises(CameraUnavailable, match=r"needs 0\.3\.20 or newer"):
        Picamera2Source().open()


def test_camera_listing_failure_is_camera_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.probe_error = RuntimeError("Failed to start camera manager: No such device")
    with pytest.raises(CameraUnavailable, match=r"libcamera cannot list the cameras .*No such device.*rpicam-hello --list-cameras"):
        Picamera2Source().open()


def test_no_camera_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.cameras = []
    with pytest.raises(CameraUnavailable, match="no camera 0 attached"):
        Picamera2Source().open()
    assert "init(0)" not in state.calls  # checked before Picamera2() raises IndexError


# --- 4. the full field of view --------------------------------------------------------------------------------------

# Camera module -> (sensor mode faceagent picks at 1280x720, share of the sensor width; libcamera's own pick, share).
MODULES = {
    "imx708": ((2304, 1296), 1.0, (1536, 864), 0.667),  # Camera Module 3
    "imx219": ((1640, 1232), 1.0, (1920, 1080), 0.585),  # Camera Module v2
    "ov5647": ((1296, 972), 1.0, (1920, 1080), 0.744),  # Camera Module v1
    "imx477": ((2028, 1520), 1.0, (2028, 1080), 0.947),  # HQ Camera
}


@pytest.mark.parametrize("sensor", sorted(MODULES))
def test_default_size_sees_the_whole_sensor_width(monkeypatch: pytest.MonkeyPatch, sensor: str) -> None:
    state = fake_picamera2.install(monkeypatch, sensor=sensor)
    source = Picamera2Source(frame_timeout_s=FAST)
    frame = source.read()
    source.close()
    chosen, share, _, _ = MODULES[sensor]
    assert state.instances[0].camera_config["sensor"]["output_size"] == chosen
    assert source.field_of_view is not None and source.field_of_view.width == pytest.approx(share, abs=0.005)
    # The scene's blue and red edge bands (1.5 % of the sensor width each) are both in the frame.
    left, right = frame.image[:, 1].mean(axis=0), frame.image[:, -2].mean(axis=0)
    assert left[0] > 200 and left[2] < 60, left
    assert right[2] > 200 and right[0] < 60, right


@pytest.mark.parametrize("sensor", sorted(MODULES))
def test_libcamera_alone_would_crop(sensor: str) -> None:
    """The figures the README gives: what libcamera's closest-size mode shows, against the chosen mode."""
    modes = [m for m in (SensorMode.from_picamera2(raw) for raw in fake_libcamera.SENSORS[sensor]) if m is not None]
    array = pixel_array_of(modes)
    chosen, share, default_size, default_share = MODULES[sensor]
    pick = choose_sensor_mode(modes, (1280, 720), 10.0)
    assert pick is not None and pick.size == chosen
    assert field_of_view(pick, (1280, 720), array).width == pytest.approx(share, abs=0.005)
    default = next(m for m in modes if m.size == default_size)
    assert field_of_view(default, (1280, 720), array).width == pytest.approx(default_share, abs=0.005)


# --- 5. a busy camera ------------------------------------------------------------------------------------------------


def test_busy_camera_names_the_cause_and_leaks_no_descriptor(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.busy = True
    source = Picamera2Source()
    before = open_fds()
    for _ in range(30):  # one enrollment burst against a camera another process holds
        with pytest.raises(CameraUnavailable, match=r"camera 0 is busy \(RuntimeError: Failed to acquire camera: Device or resource busy\)"):
            source.read()
    after = open_fds()
    print(f"descriptors open before 30 failed opens: {before}, after: {after}")
    # a descriptor per failed open would add 30; other tests' threads in this worker process may open or close a few
    assert after - before < 10
    assert fake_picamera2.FakePicamera2._cm.cameras == {}
    state.busy = False
    assert source.read().image.shape == (720, 1280, 3)
    source.close()


# --- 6. sizes read back, configuration checks, rotation ---------------------------------------------------------------


def test_sizes_libcamera_adjusted_are_used(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    state = fake_picamera2.install(monkeypatch, platform="pi4")
    state.adjust = {"lores": (256, 144)}
    source = Picamera2Source(frame_timeout_s=FAST)
    with caplog.at_level(logging.WARNING):
        frame = source.read()
    source.close()
    assert frame.detect_image is not None and frame.detect_image.shape == (144, 256, 3)
    assert frame.detect_scale == (5.0, 5.0)
    assert lores_error(frame)[0] < 3.0
    assert "lores 320x180 -> 256x144" in caplog.text


def test_rotation_180_turns_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    source = build_source(Picamera2Camera(type="picamera2", rotation=180, frame_timeout_s=0.5))
    frame = source.read()
    source.close()
    transform = state.instances[0].camera_config["transform"]
    assert transform.hflip and transform.vflip
    assert frame.image[:, -2].mean(axis=0)[0] > 200  # the left (blue) edge is now on the right
    assert lores_error(frame)[0] < 3.0


def test_selected_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    state = fake_picamera2.install(monkeypatch)
    state.cameras = [dict(state.camera_list()[0], Num=0), dict(state.camera_list()[0], Num=1)]
    source = build_source(Picamera2Camera(type="picamera2", device="1", width=800, height=600, lores_width=400, lores_height=300,
                                       frame_timeout_s=2.5))
    assert isinstance(source, Picamera2Source)
    assert (source.camera_num, source.size, source.lores, source.frame_timeout_s) == (1, (800, 600), (400, 300), 2.5)
    source.read()
    source.close()
    assert "init(1)" in state.calls


@pytest.mark.parametrize(("camera", "path", "message"), [
    ({"device": "/dev/video0"}, "camera.device", "picamera2 selects a camera by number"),
    ({"lores_width": 1600, "lores_height": 900}, "camera.lores_width", "must not exceed"),
    ({"lores_width": 320, "lores_height": 240}, "camera.lores_width", r"must have the shape of camera.width/height 1280x720 \(e.g. 320x180\)"),
    ({"lores_width": 321, "lores_height": 181}, "camera.lores_width", "needs even sizes"),
])
def test_picamera2_settings_are_checked(camera: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"camera": {"type": "picamera2", **camera}}, {})
    assert [p for p, _ in info.value.problems] == [path]
    assert any(re.search(message, reason) for _, reason in info.value.problems), info.value.problems


def test_rotation_needs_picamera2() -> None:
    with pytest.raises(ConfigError, match=r"camera\.rotation: applied by picamera2 only"):
        config_from_mapping({"camera": {"type": "opencv", "device": 0, "rotation": 180}}, {})


# --- on a real Pi ----------------------------------------------------------------------------------------------------


@pytest.mark.hw
def test_real_pi_camera_lores_colour_matches_main() -> None:
    """On a Pi 4 or 5 with a camera: the detection frame shows the same colours as the main frame of the same request."""
    source = Picamera2Source()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame.image.shape == (720, 1280, 3) and frame.detect_image is not None and frame.detect_image.shape == (180, 320, 3)
    mean, off = lores_error(frame)
    print(f"real camera: {source.encoding.name}, mode {source.sensor_mode}, lores mean difference {mean:.2f}, {off:.1%} off by > 40")
    assert mean < 8.0 and off < 0.05  # a padded-stride or chroma-order mistake gives ~20 and a fifth of the pixels
