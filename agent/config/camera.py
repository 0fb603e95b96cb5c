"""The `camera` section: one model per `camera.type`, so each backend's settings are its own fields.

The YAML is unchanged: `type` picks the model (default `files`). One file may carry the keys of every kind
(config/agent.example.yaml lists them all): the keys of the other kinds are checked as those kinds check them,
so a typo is still named with its dotted key, and then set aside.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, TypeAdapter, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from agent.config.sections import Section

CAMERA_TYPES = ("picamera2", "opencv", "files")


def _index_problem(device: str | int | None) -> str | None:
    text = str(device) if device is not None else ""
    index = device if isinstance(device, int) else (int(text) if text.lstrip("-").isdigit() else None)
    if index is not None and not 0 <= index < 64:  # OpenCV crashes on a negative index
        return f"device: {device!r} is not a camera index (0-63)"
    return None


class _Camera(Section):
    """What every kind has: the capture size and rate, and how the camera is kept open."""

    type: Literal["picamera2", "opencv", "files"] = Field(description="camera backend (default files)")
    width: int = Field(1280, ge=64, le=8192, description="capture (upload) resolution")
    height: int = Field(720, ge=64, le=8192, description="capture (upload) height")
    fps: float = Field(10.0, gt=0, le=120, description="frames per second requested and read during a capture burst")
    idle_close_s: float | None = Field(30.0, ge=0, description="close the camera after this many idle seconds; null keeps it open")
    reopen_max_s: float = Field(30.0, gt=0, le=600, description="cap of the reopen backoff after read failures")

    @model_validator(mode="wrap")
    @classmethod
    def _keys_of_other_kinds(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Set aside the other kinds' keys, each checked as its kind checks it; report every problem at once."""
        if not isinstance(data, dict):
            return handler(data)
        foreign = {key: value for key, value in data.items() if key not in cls.model_fields and key in OWNERS}
        problems = [problem for key, value in foreign.items() for problem in _foreign_problems(key, value)]
        try:
            result = handler({key: value for key, value in data.items() if key not in foreign})
        except ValidationError as exc:
            raise ValidationError.from_exception_data(exc.title, [*exc.errors(), *problems]) from None  # type: ignore[list-item]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return result


@cache
def _adapter(key: str) -> TypeAdapter[Any]:
    field = OWNERS[key].model_fields[key]
    return TypeAdapter(Annotated[field.annotation, field], config={"strict": True})  # type: ignore[arg-type]


def _foreign_problems(key: str, value: Any) -> list[InitErrorDetails]:
    """A key of another kind: valid as that kind reads it, and without effect here (a rotation must say so)."""
    try:
        _adapter(key).validate_python(value)
    except ValidationError as exc:
        return [InitErrorDetails(type=e["type"], loc=(key, *e["loc"]), input=e["input"], ctx=e.get("ctx", {}))
                for e in exc.errors(include_url=False)]
    problem = "rotation: applied by picamera2 only (camera.type: picamera2)" if key == "rotation" and value else None
    problem = problem or (_index_problem(value) if key == "device" else None)  # "key: reason", as the models' own checks say it
    if problem is None:
        return []
    return [InitErrorDetails(type="value_error", loc=(), input=value, ctx={"error": ValueError(problem)})]


class FilesCamera(_Camera):
    """Images from files: development, tests, and frames a separate process writes."""

    type: Literal["files"] = Field(description="camera backend (default files)")
    path: str | None = Field(None, description="an image, a directory or a glob")
    loop: bool = Field(True, description="start again after the last image")
    sensor_noise: int = Field(2, ge=0, le=16, description="noise (grey levels) added to each read, so two captures of "
                              "a still image differ as live frames do; 0 replays the files exactly")

    @model_validator(mode="after")
    def _path_given(self) -> FilesCamera:
        if not self.path:
            raise ValueError("path: required when camera.type is files")
        return self


class OpenCvCamera(_Camera):
    """A V4L2 device, a network stream or a video file through OpenCV."""

    type: Literal["opencv"] = Field(description="camera backend")
    path: str | None = Field(None, description="a video file (when device is unset)")
    device: str | int | None = Field(None, description="V4L2 index (0), /dev/video0 or an rtsp:// or http:// URL")

    @model_validator(mode="after")
    def _device_index(self) -> OpenCvCamera:
        problem = _index_problem(self.device)
        if problem:
            raise ValueError(problem)
        return self


class Picamera2Camera(_Camera):
    """A Raspberry Pi camera through picamera2: a full-size stream to upload and a small one to detect on."""

    type: Literal["picamera2"] = Field(description="camera backend")
    device: str | int | None = Field(None, description="camera number (0 or 1)")
    lores_width: int = Field(320, ge=64, le=1920, description="detection stream size, the capture's shape and at most its size")
    lores_height: int = Field(180, ge=64, le=1080, description="detection stream height")
    rotation: Literal[0, 180] = Field(0, description="180 turns the image for a camera mounted upside down")
    frame_timeout_s: float = Field(3.0, ge=0.5, le=60, description="longest wait for a frame before the camera counts as failed")

    @model_validator(mode="after")
    def _picamera2_settings(self) -> Picamera2Camera:
        problem = _index_problem(self.device)
        if problem:
            raise ValueError(problem)
        if self.device is not None and not str(self.device).isdigit():
            raise ValueError(f"device: {self.device!r}: picamera2 selects a camera by number (0 or 1); "
                             "for a V4L2 device such as /dev/video0 use camera.type: opencv")
        sizes = {"width": self.width, "height": self.height, "lores_width": self.lores_width, "lores_height": self.lores_height}
        odd = [name for name, value in sizes.items() if value % 2]
        if odd:
            raise ValueError(f"{odd[0]}: picamera2 needs even sizes ({', '.join(f'camera.{n} {sizes[n]}' for n in odd)})")
        if self.lores_width > self.width or self.lores_height > self.height:
            raise ValueError(f"lores_width: {self.lores_width}x{self.lores_height} must not exceed "
                             f"camera.width/height {self.width}x{self.height}")
        if abs(self.lores_width * self.height - self.lores_height * self.width) > 0.01 * self.width * self.lores_height:
            fitting = round(self.lores_width * self.height / self.width / 2) * 2
            raise ValueError(f"lores_width: camera.lores_width/lores_height {self.lores_width}x{self.lores_height} must have the shape of "
                             f"camera.width/height {self.width}x{self.height} (e.g. {self.lores_width}x{fitting})")
        return self

    @property
    def camera_number(self) -> int:
        """The camera index `device` names (0 when unset)."""
        return int(self.device or 0)


CAMERA_KINDS: tuple[type[_Camera], ...] = (FilesCamera, OpenCvCamera, Picamera2Camera)
OWNERS = {key: kind for kind in CAMERA_KINDS for key in kind.model_fields if key not in _Camera.model_fields}  # key -> a kind it is of
CameraConfig = Annotated[FilesCamera | OpenCvCamera | Picamera2Camera, Field(discriminator="type")]
