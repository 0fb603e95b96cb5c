"""The frame contract every camera source keeps, and the small interface a backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One capture: `image` is BGR uint8 HxWx3 at upload resolution; `timestamp` is wall-clock seconds.

    `detect_image` is a smaller BGR frame of the same instant when the source provides one (picamera2's
    `lores` stream): detect small, crop big.
    """

    image: np.ndarray
    timestamp: float
    detect_image: np.ndarray | None = None

    @property
    def detection(self) -> np.ndarray:
        return self.image if self.detect_image is None else self.detect_image

    @property
    def detect_scale(self) -> tuple[float, float]:
        """(sx, sy) mapping detection-frame pixels to `image` pixels."""
        if self.detect_image is None:
            return 1.0, 1.0
        return self.image.shape[1] / self.detect_image.shape[1], self.image.shape[0] / self.detect_image.shape[0]


class CameraSource(ABC):
    """A frame source. `open()` acquires the device, `read()` returns the newest frame, `close()` always releases.

    Errors are `CameraUnavailable` with a message naming the source.
    """

    #: human name used in messages and telemetry ("picamera2", "opencv", "files")
    kind: str = ""
    #: whether frames carry a separate detection image
    provides_detect_stream: bool = False
    #: whether the source is a live device (an idle daemon closes those)
    live: bool = True

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @property
    @abstractmethod
    def description(self) -> str:
        """Where frames come from, for messages ("files /srv/frames/*.jpg", "opencv /dev/video0")."""

    def __enter__(self) -> CameraSource:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
