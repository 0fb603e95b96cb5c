"""Frames from files: one image, a directory or a glob of images (sorted), or a video file. For demos, tests, CI.

Each read adds a little sensor noise (`sensor_noise`, seeded): two captures of a still image are then two
frames, as from a live camera, whose frames never repeat byte for byte. 0 replays the files exactly.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import cv2
import numpy as np

from agent.camera.base import CameraSource, Frame
from agent.errors import CameraUnavailable, ImageUnreadable
from agent.images import read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class FilesSource(CameraSource):
    kind = "files"
    live = False

    def __init__(self, path: str, loop: bool = True, sensor_noise: int = 0) -> None:
        self.path = path
        self.loop = loop
        self.sensor_noise = sensor_noise
        self._rng = np.random.default_rng(len(path))
        self._images: list[Path] = []
        self._index = 0
        self._video: cv2.VideoCapture | None = None
        self._opened = False

    @property
    def description(self) -> str:
        return f"files {self.path}"

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> None:
        if self._opened:
            return
        path = Path(self.path)
        if path.is_dir():
            self._images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self._images:
                raise CameraUnavailable(f"camera files: {self.path} holds no .jpg/.png/.bmp images")
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            video = cv2.VideoCapture(str(path))
            if not video.isOpened():
                raise CameraUnavailable(f"camera files: video {self.path} cannot be opened")
            self._video = video
        elif path.is_file():
            self._images = [path]
        else:
            self._images = sorted(Path(p) for p in glob.glob(self.path) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise CameraUnavailable(f"camera files: {self.path} does not exist or matches no image")
        self._index = 0
        self._opened = True

    def read(self) -> Frame:
        if not self._opened:
            self.open()
        if self._video is not None:
            return self._read_video()
        if self._index >= len(self._images):
            if not self.loop:
                raise CameraUnavailable(f"camera files: no more images in {self.path}")
            self._index = 0
        path = self._images[self._index]
        self._index += 1
        try:
            return Frame(self._sensor(read_image(path)), time.time())
        except ImageUnreadable as exc:
            raise CameraUnavailable(f"camera files: {exc.message}") from None

    def _sensor(self, image: np.ndarray) -> np.ndarray:
        if not self.sensor_noise:
            return image
        noise = self._rng.integers(-self.sensor_noise, self.sensor_noise + 1, size=image.shape, dtype=np.int16)
        return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    def _read_video(self) -> Frame:
        assert self._video is not None
        ok, image = self._video.read()
        if not ok and self.loop:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._video.read()
        if not ok or image is None:
            raise CameraUnavailable(f"camera files: no more frames in video {self.path}")
        return Frame(self._sensor(image), time.time())

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self._opened = False
