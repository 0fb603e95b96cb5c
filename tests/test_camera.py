"""Camera sources: files, OpenCV (video file and a failing device), bursts, idle policy, snapshot (picamera2: test_picamera2.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from agent.camera.base import Frame
from agent.camera.camera import Camera
from agent.camera.files import FilesSource
from agent.camera.opencv import OpenCvSource
from agent.camera.picamera2 import Picamera2Source
from agent.errors import CameraUnavailable, ErrorCode
from tests import fake_picamera2
from tests.conftest import DATA


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (320, 240)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), i * 20, np.uint8)
        writer.write(img)
    writer.release()


def assert_bgr(frame: Frame) -> None:
    assert frame.image.dtype == np.uint8 and frame.image.ndim == 3 and frame.image.shape[2] == 3
    assert frame.timestamp > 0


# --- files -----------------------------------------------------------------------------------------


def test_files_single_image(tmp_path: Path) -> None:
    source = FilesSource(str(DATA / "astronaut.png"))
    with source:
        a, b = source.read(), source.read()
    assert_bgr(a)
    assert a.image.shape == (512, 512, 3) and np.array_equal(a.image, b.image)


def test_files_directory_sorted_and_looping(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.png", "c.bmp"):
        img = cv2.imread(str(DATA / "astronaut.png"))
        cv2.imwrite(str(tmp_path / name), cv2.resize(img, (64 + len(name) * (ord(name[0]) - 96), 64)))
    (tmp_path / "notes.txt").write_text("ignored")
    source = FilesSource(str(tmp_path), loop=True)
    widths = [source.read().image.shape[1] for _ in range(4)]
    assert widths == [69, 74, 79, 69]  # a, b, c, then a again


def test_files_glob_once_then_exhausted(tmp_path: Path) -> None:
    shutil.copy(DATA / "astronaut.png", tmp_path / "x1.png")
    shutil.copy(DATA / "coffee.png", tmp_path / "x2.png")
    source = FilesSource(str(tmp_path / "x*.png"), loop=False)
    assert source.read().image.shape[:2] == (512, 512)
    assert source.read().image.shape[:2] == (400, 600)
    with pytest.raises(CameraUnavailable, match="no more images"):
        source.read()


def test_files_video(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_video(video, frames=5)
    source = FilesSource(str(video), loop=True)
    values = [int(source.read().image.mean()) for _ in range(7)]
    assert values[:5] == pytest.approx([0, 20, 40, 60, 80], abs=3)
    assert values[5] == pytest.approx(0, abs=3)  # looped
    source.close()
    once = FilesSource(str(video), loop=False)
    for _ in range(5):
        once.read()
    with pytest.raises(CameraUnavailable, match="no more frames in video"):
        once.read()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.jpg"), "does not exist or matches no image"),
        (lambda d: str(d / "empty_dir"), "holds no .jpg/.png/.bmp images"),
        (lambda d: str(d / "corrupt.jpg"), "is not a decodable image"),
        (lambda d: str(d / "bad.avi"), "cannot be opened"),
    ],
)
def test_files_missing_and_corrupt_sources_name_the_path(tmp_path: Path, make: object, message: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "bad.avi").write_bytes(b"not a video at all")
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(CameraUnavailable, match=message) as info:
        FilesSource(path).read()
    assert path in info.value.message and info.value.code == ErrorCode.CAMERA_UNAVAILABLE


# --- opencv ------------------------------------------------------------------------------------------


def test_opencv_reads_a_video_file(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_video(video, frames=3)
    source = OpenCvSource(str(video), width=320, height=240)
    frames = [source.read() for _ in range(4)]
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert int(frames[3].image.mean()) == pytest.approx(0, abs=3)  # wrapped to the start
    source.close()
    assert not source.is_open


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opencv_failing_source_reopens_with_capped_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    device = tmp_path / "later.avi"
    source = OpenCvSource(str(device), reopen_max_s=4.0, clock=clock)
    waits = []
    for _ in range(6):
        with pytest.raises(CameraUnavailable, match="cannot be opened"):
            source.read()
        waits.append(source._retry_at - clock.now)
        with pytest.raises(CameraUnavailable, match="next try in"):
            source.read()  # within the backoff: no reopen attempt at all
        clock.now += waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    write_video(device, frames=2)
    assert source.read().image.shape == (240, 320, 3)  # recovered once the source exists
    assert source._failures == 0


def test_opencv_read_failure_closes_and_backs_off() -> None:
    class Capture:
        opened = 0

        def __init__(self, device: object) -> None:
            Capture.opened += 1
            self.reads = 0

        def isOpened(self) -> bool:
            return True

        def set(self, *args: object) -> bool:
            return True

        def grab(self) -> bool:
            return True

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.reads += 1
            return (Capture.opened > 1, np.zeros((240, 320, 3), np.uint8) if Capture.opened > 1 else None)

        def release(self) -> None:
            pass

    clock = FakeClock()
    source = OpenCvSource("/dev/video9", clock=clock, capture_factory=Capture)
    with pytest.raises(CameraUnavailable, match="read failed"):
        source.read()
    assert not source.is_open
    clock.now += 0.5
    assert source.read().image.shape == (240, 320, 3)
    assert Capture.opened == 2


# --- the Camera wrapper ----------------------------------------------------------------------------------


class SteppingClock(FakeClock):
    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_burst_is_rate_limited_and_bounded_by_time() -> None:
    clock = SteppingClock()
    camera = Camera(FilesSource(str(DATA / "astronaut.png")), fps=5, clock=clock, sleep=clock.sleep)
    frames = list(camera.burst(timeout_s=2.0))
    assert len(frames) == 10  # 5 per second for 2 s
    assert camera.health()["frames"] == 10


def test_burst_rides_out_short_hiccups_then_raises() -> None:
    clock = SteppingClock()

    class Flaky(FilesSource):
        def read(self) -> Frame:
            clock.now += 0.01
            raise CameraUnavailable("camera files: gone")

    camera = Camera(Flaky(str(DATA / "astronaut.png")), fps=10, clock=clock, sleep=clock.sleep)
    with pytest.raises(CameraUnavailable, match="gone"):
        list(camera.burst(timeout_s=10, tolerate_errors_s=1.0))
    assert clock.now - 100 < 1.5
    assert camera.health()["status"] == "error"


def test_idle_live_camera_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_picamera2.install(monkeypatch)
    clock = SteppingClock()
    camera = Camera(Picamera2Source(), idle_close_s=30, clock=clock, sleep=clock.sleep)
    camera.capture()
    clock.now += 29
    assert not camera.close_if_idle()
    clock.now += 2
    assert camera.close_if_idle() and not camera.source.is_open
    assert camera.health()["status"] == "closed"
    camera.capture()  # reopens lazily
    assert camera.source.is_open
    camera.close()  # one process, one holder of the camera
    keep = Camera(Picamera2Source(), idle_close_s=None, clock=clock, sleep=clock.sleep)
    keep.capture()
    clock.now += 10_000
    assert not keep.close_if_idle()
    keep.close()


# --- snapshot ----------------------------------------------------------------------------------------------


def snapshot(tmp_path: Path, camera: dict[str, object], *extra: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"device_id": "cam-test", "state_dir": str(tmp_path), "camera": camera}))
    return subprocess.run([sys.executable, "-m", "agent", "snapshot", "--config", str(cfg), *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def test_snapshot_writes_an_annotated_frame(tmp_path: Path) -> None:
    out = tmp_path / "snap.jpg"
    proc = snapshot(tmp_path, {"type": "files", "path": str(DATA / "astronaut.png")}, "--out", str(out), "--annotate")
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out))
    assert img.shape == (512, 512, 3)
    original = cv2.imread(str(DATA / "astronaut.png"))
    assert np.abs(img.astype(int) - original.astype(int)).max() > 100  # boxes drawn


def test_snapshot_of_missing_source_exits_1_naming_it(tmp_path: Path) -> None:
    proc = snapshot(tmp_path, {"type": "files", "path": str(tmp_path / "nowhere")}, "--out", str(tmp_path / "x.jpg"))
    assert proc.returncode == 1
    assert "nowhere" in proc.stderr
