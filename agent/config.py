"""The one configuration loader: YAML file -> strict, typed, validated `Config` (docs/configuration.md).

Every section rejects unknown keys; every error is reported at once with its dotted key path.
Secrets never live in the YAML file: they are resolved from `$CREDENTIALS_DIRECTORY` (systemd
`LoadCredential=`), then the environment, and kept as `SecretStr` so they never print.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent.config_messages import type_reason, yaml_spelling
from agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/faceagent/agent.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/faceagent")

# (credential file name, environment variable) per secret, in lookup order (README, "Configuration").
SECRET_SOURCES: dict[str, tuple[str, str]] = {
    "secret_id": ("tencentcloud_secret_id", "TENCENTCLOUD_SECRET_ID"),
    "secret_key": ("tencentcloud_secret_key", "TENCENTCLOUD_SECRET_KEY"),
    "session_token": ("tencentcloud_session_token", "TENCENTCLOUD_SESSION_TOKEN"),
    "mqtt_password": ("mqtt_password", "FACEAGENT_MQTT_PASSWORD"),
    "command_key": ("command_hmac_key", "FACEAGENT_COMMAND_KEY"),
}


MIN_COMMAND_KEY_CHARS = 16  # an HMAC key an operator cannot guess; 32 random characters recommended


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://[user[:password]@]host[:port]` or `mqtts://...`, strictly; `ValueError` says what is wrong."""
    if "://" not in url:
        raise ValueError(f"{url!r} has no scheme: write mqtt://{url} (or mqtts:// for TLS)")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"scheme {parts.scheme!r} is not mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://host:port with nothing after the port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port: use 1-65535") from None
    if port == 0:
        raise ValueError("has an invalid port: use 1-65535")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls,
                     unquote(parts.username) if parts.username else None, unquote(parts.password) if parts.password else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _existing_file(path: Path | None, what: str) -> None:
    if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
        raise ValueError(f"{what}: {path} does not exist or is not readable by this user")


def plain_topic_prefix(value: str) -> str:
    """A topic prefix without wildcards, NUL or a leading or trailing slash (ValueError says which rule)."""
    if any(c in value for c in "#+\0") or value.startswith("/") or value.endswith("/"):
        raise ValueError("must not contain # + or NUL, nor start or end with /")
    return value


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable after load.

    Strict types: `threads: "2"` (a string) is refused rather than guessed; the few obvious spellings YAML
    turns into another type (`protocol: 5`, `version: 2018-03-01`, `level: info`) are accepted by their fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


class MqttTls(Section):
    ca_file: Path | None = Field(None, strict=False, description="CA bundle that signed the broker's certificate; system CAs when unset")
    cert_file: Path | None = Field(None, strict=False, description="client certificate for mutual TLS")
    key_file: Path | None = Field(None, strict=False, description="client private key for mutual TLS")

    @model_validator(mode="after")
    def _files_usable(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file: cert_file and key_file must be given together")
        for name in ("ca_file", "cert_file", "key_file"):
            _existing_file(getattr(self, name), name)
        return self


class MqttConfig(Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port, or mqtts://host:port for TLS")
    topic_prefix: str = Field("faceagent", min_length=1, max_length=64, description="topics are <prefix>/<device_id>/...")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    username: str | None = Field(None, description="password comes from the mqtt_password credential")
    client_id: str | None = Field(None, description="default faceagent-<device_id>; must be unique per device")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive; the broker publishes the will after 1.5x this without traffic")
    session_expiry_s: int = Field(3600, ge=0, le=7 * 24 * 3600, description="persistent session: commands sent while offline still arrive")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay; doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="longest reconnect delay")
    telemetry_interval_s: float = Field(60.0, ge=1, le=86400, description="period of <base>/telemetry")
    tls: MqttTls = Field(default_factory=MqttTls)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        return yaml_spelling(value, ("5", "3.1.1"))  # `protocol: 5` is an integer to YAML

    @field_validator("url")
    @classmethod
    def _url_strict(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        broker = parse_broker_url(value)
        if broker.username or broker.password:
            raise ValueError("must not carry credentials: use mqtt.username and the mqtt_password credential")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        return plain_topic_prefix(value)

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s: must be >= reconnect_min_s")
        return self


class CloudConfig(Section):
    endpoint: str = Field("https://iai.tencentcloudapi.com", description="IAI API host; http://127.0.0.1:PORT for the emulator")
    version: Literal["2018-03-01", "2020-03-03"] = Field("2018-03-01", description="IAI API version (same CreateFace fields in both)")
    region: str = Field("ap-guangzhou", description="X-TC-Region, sent with every call (2020-03-03 requires it); "
                        "persons belong to the account, so one region serves the whole fleet")
    language: Literal["", "zh-CN", "en-US"] = Field("en-US", description="X-TC-Language for error messages")
    connect_timeout_s: float = Field(3.05, gt=0, le=60, description="TCP/TLS connect timeout per attempt")
    read_timeout_s: float = Field(15.0, gt=0, le=300, description="time to wait for the answer per attempt (then: outcome unknown, reconcile)")
    settle_s: float = Field(5.0, ge=5, le=300, description="after a lost CreateFace/CreatePerson answer the person is read back "
                            "until read_timeout_s + this after sending (IAI applies a face within 5 s)")
    health_interval_s: float = Field(300.0, ge=5, le=86400, description="how often the account is checked (a cheap read); "
                                     "while it is unusable (keys refused, arrears) commands are refused at once")
    reconcile_give_up_s: float = Field(3600.0, ge=60, le=7 * 86400,
                                       description="a lost answer the cloud cannot be asked about for this long ends as status unknown")
    max_attempts: int = Field(4, ge=1, le=10, description="attempts per call, first one included")
    deadline_s: float = Field(30.0, gt=0, le=600, description="overall time budget per call, retries included")
    backoff_base_s: float = Field(0.5, gt=0, le=30, description="exponential backoff base; each wait is drawn from [0, base * 2^n] (full jitter)")
    backoff_max_s: float = Field(8.0, gt=0, le=120, description="cap of one backoff wait")
    rate_limit_per_s: float = Field(5.0, gt=0, le=50, description="client-side token bucket; the account's 50/s is shared by the fleet")
    rate_burst: int = Field(5, ge=1, le=50, description="requests the token bucket lets through at once")

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return yaml_spelling(value, ("2018-03-01", "2020-03-03"))  # an unquoted 2018-03-01 is a YAML date

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http"):
            raise ValueError("must start with https:// (or http:// for a local emulator)")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("has an invalid port: use 1-65535") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("must be https://host[:port] with nothing after it")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("http:// only to a loopback emulator: face images must never travel in clear text; use https://")
        return value.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z]{2,4}-[a-z]+(-[a-z0-9]+)?", value):
            raise ValueError("must be a Tencent Cloud region such as ap-guangzhou")
        return value

    @model_validator(mode="after")
    def _region_for_version(self) -> CloudConfig:
        if self.version == "2020-03-03" and not self.region:
            raise ValueError("region: required with version 2020-03-03 (e.g. ap-guangzhou)")
        return self


class CameraConfig(Section):
    type: Literal["picamera2", "opencv", "files"] = Field("files", description="camera backend")
    path: str | None = Field(None, description="files: an image, a directory or a glob; opencv: a video file")
    loop: bool = Field(True, description="files: start again after the last image")
    device: str | int | None = Field(
        None, description="opencv: V4L2 index (0), /dev/video0 or an rtsp:// or http:// URL; picamera2: camera number (0 or 1)")
    width: int = Field(1280, ge=64, le=8192, description="capture (upload) resolution")
    height: int = Field(720, ge=64, le=8192, description="capture (upload) height")
    fps: float = Field(10.0, gt=0, le=120, description="frames per second requested and read during a capture burst")
    lores_width: int = Field(320, ge=64, le=1920, description="picamera2: detection stream size, the capture's shape and at most its size")
    lores_height: int = Field(180, ge=64, le=1080, description="picamera2: detection stream height")
    rotation: Literal[0, 180] = Field(0, description="picamera2: 180 turns the image for a camera mounted upside down")
    frame_timeout_s: float = Field(3.0, ge=0.5, le=60, description="picamera2: longest wait for a frame before the camera counts as failed")
    idle_close_s: float | None = Field(30.0, ge=0, description="close the camera after this many idle seconds; null keeps it open")
    reopen_max_s: float = Field(30.0, gt=0, le=600, description="cap of the reopen backoff after read failures")

    @model_validator(mode="after")
    def _source_given(self) -> CameraConfig:
        if self.type == "files" and not self.path:
            raise ValueError("path: required when camera.type is files")
        return self

    @model_validator(mode="after")
    def _picamera2_settings(self) -> CameraConfig:
        if self.type != "picamera2":
            if self.rotation:
                raise ValueError("camera.rotation is applied by picamera2 only (camera.type: picamera2)")
            return self
        if self.device is not None and not str(self.device).isdigit():
            raise ValueError(f"camera.device {self.device!r}: picamera2 selects a camera by number (0 or 1); "
                             "for a V4L2 device such as /dev/video0 use camera.type: opencv")
        sizes = {"width": self.width, "height": self.height, "lores_width": self.lores_width, "lores_height": self.lores_height}
        odd = [f"camera.{name} {value}" for name, value in sizes.items() if value % 2]
        if odd:
            raise ValueError(f"{', '.join(odd)}: picamera2 needs even sizes")
        if self.lores_width > self.width or self.lores_height > self.height:
            raise ValueError(f"camera.lores_width/lores_height {self.lores_width}x{self.lores_height} must not exceed "
                             f"camera.width/height {self.width}x{self.height}")
        if abs(self.lores_width * self.height - self.lores_height * self.width) > 0.01 * self.width * self.lores_height:
            fitting = round(self.lores_width * self.height / self.width / 2) * 2
            raise ValueError(f"camera.lores_width/lores_height {self.lores_width}x{self.lores_height} must have the shape of "
                             f"camera.width/height {self.width}x{self.height} (e.g. {self.lores_width}x{fitting})")
        return self

    @property
    def camera_number(self) -> int:
        """picamera2: the camera index `device` names (0 when unset)."""
        return int(self.device or 0)


# What the bundled RetinaFace can see, in pixels of its input: its smallest anchor is 16 px. One pass
# finds >= 95 % of faces from 1.5x that (24 px); the two-pass detector, whose crop checks confirm
# low-score first-pass candidates, from the anchor itself (16 px). Measured on composed 1280x720 frames
# at four input sizes (`faceagent bench --recall`, docs/benchmarks.md "Recall by face size").
SMALLEST_ANCHOR_PX = 16.0
ONE_PASS_REACH = 1.5
TWO_PASS_REACH = 1.0


def first_pass_scale(capture: tuple[int, int], detector_input: tuple[int, int], detect_stream: tuple[int, int] | None = None) -> float:
    """Detector-input pixels per capture pixel in the first pass (the coarser of the input and the detection stream)."""
    scale = min(detector_input[0] / capture[0], detector_input[1] / capture[1])
    if detect_stream is not None:
        scale = min(scale, detect_stream[0] / capture[0], detect_stream[1] / capture[1])
    return scale


def smallest_face_px(
    capture: tuple[int, int], detector_input: tuple[int, int], cascade: bool, detect_stream: tuple[int, int] | None = None
) -> float:
    """The smallest face (shorter box side, capture pixels) the detector finds reliably: the one place this is stated.

    A capture frame of `capture` (w, h) is fitted into `detector_input` keeping its aspect, so one
    capture pixel is `s = first_pass_scale(...)` input pixels (with a detection stream, such as
    picamera2's `lores`, the coarser of that stream and the input: upscaling adds no detail). The
    detector finds faces down to SMALLEST_ANCHOR_PX x reach / s, reach 1.5 for one pass and 1.0 for
    the two-pass detector. For a 1280x720 capture: 320x180 two-pass 64 px, one pass 96 px; 480x270
    two-pass 43 px, one pass 64 px; 640x360 two-pass 32 px, one pass 48 px. `quality.min_face_px`
    must be at least this, or the rule would accept faces the detector does not report (answering
    `no_face` where "move closer" is right); config validation refuses such combinations.
    """
    reach = SMALLEST_ANCHOR_PX * (TWO_PASS_REACH if cascade else ONE_PASS_REACH)
    return reach / first_pass_scale(capture, detector_input, detect_stream)


class DetectorConfig(Section):
    model_path: Path | None = Field(None, strict=False, description="another RetinaFace-compatible ONNX file; default the bundled model")
    input_width: int = Field(
        320, ge=32, le=1920, description="first-pass input size; frames are fitted keeping their aspect, so match the camera's (320x180 for 16:9)"
    )
    input_height: int = Field(180, ge=32, le=1920, description="first-pass input height")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime intra-op threads; 0 = all cores but one (at least 1)")
    score_threshold: float = Field(0.7, gt=0, lt=1, description="minimum face score")
    nms_threshold: float = Field(0.4, gt=0, lt=1, description="IoU above which overlapping boxes are merged")
    cascade: bool = Field(
        True, description="two-pass: doubtful first-pass candidates are confirmed in small full-resolution crops (finds faces 2/3 the size)"
    )
    candidate_threshold: float = Field(0.05, gt=0, lt=1, description="two-pass: first-pass score from which a candidate is checked in a crop")
    max_crop_checks: int = Field(
        4, ge=1, le=32, description="two-pass: crop checks per frame at most (largest candidates first), bounding the cost of crowds"
    )

    @model_validator(mode="after")
    def _candidates_below_final_score(self) -> DetectorConfig:
        if self.candidate_threshold > self.score_threshold:
            raise ValueError("candidate_threshold must be <= score_threshold")
        return self


class QualityConfig(Section):
    min_face_px: float = Field(
        64.0, ge=0, description="shorter side of the face box in capture pixels; IAI needs 34, recommends 80; at least what the detector sees"
    )
    min_eye_distance_px: float = Field(24.0, ge=0, description="pixels between the eyes")
    min_sharpness: float = Field(60.0, ge=0, description="Laplacian variance of the face resized to 112x112 grey")
    min_brightness: float = Field(50.0, ge=0, le=255, description="mean grey level of the face, at least")
    max_brightness: float = Field(210.0, ge=0, le=255, description="mean grey level of the face, at most")
    max_clipped_fraction: float = Field(0.25, ge=0, le=1, description="share of face pixels at <= 5 or >= 250")
    max_yaw_deg: float = Field(30.0, ge=0, le=90, description="head turned left/right, at most")
    max_pitch_deg: float = Field(30.0, ge=0, le=90, description="head tilted up/down, at most")
    max_roll_deg: float = Field(25.0, ge=0, le=180, description="head tilted sideways, at most")


class SelectionConfig(Section):
    multiple_face_ratio: float = Field(0.5, gt=0, le=1, description="another face at least this fraction of the target's area -> multiple_faces")


class CropConfig(Section):
    scale: float = Field(1.8, ge=1.5, le=2.0, description="square crop side / longer side of the face box")
    jpeg_quality: int = Field(92, ge=50, le=100, description="JPEG quality of uploaded crops")
    min_side_px: int = Field(112, ge=64, description="IAI needs >= 64 px on the short side")


class EnrollConfig(Section):
    capture_timeout_s: float = Field(15.0, ge=1, le=60, description="default capture_timeout_s of a command")
    queue_size: int = Field(8, ge=1, le=1000, description="queued commands beyond this are answered queue_full")
    min_capture_gap_s: float = Field(0.4, ge=0, le=10, description="several captures of one person are at least this far apart")
    preview_px: int = Field(160, ge=32, le=512, description="side of preview JPEGs in results")
    shutdown_grace_s: float = Field(10.0, ge=0, le=120, description="on SIGTERM, wait this long for the running job before re-queuing it")
    result_retention_days: int = Field(30, ge=1, le=3650, description="results kept for replaying duplicate ids")


class CommandsConfig(Section):
    require_signature: bool = Field(False, description="reject commands without a valid HMAC signature (key: command_hmac_key credential)")
    max_clock_skew_s: int = Field(300, ge=10, le=3600, description="signed commands whose ts is further than this from the device clock are rejected")
    min_face_match_threshold: float = Field(0.0, ge=0, le=100, description="commands may not lower face_match_threshold below this")


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level ($FACEAGENT_LOG_LEVEL or --log-level override it)")
    format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object per line")

    @field_validator("level", mode="before")
    @classmethod
    def _level_any_case(cls, value: Any) -> Any:
        return yaml_spelling(value, ("DEBUG", "INFO", "WARNING", "ERROR"))  # `level: info`


class HomeAssistantConfig(Section):
    discovery: bool = Field(False, description="publish Home Assistant MQTT discovery: the device, sensors for the last enrollment, "
                            "queue depth and cloud status, and an image of the latest snapshot")
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=64, description="Home Assistant's discovery prefix")
    allow_enroll: bool = Field(False, description="a text entity that enrolls the person id typed into it (anyone who can use "
                               "Home Assistant can enroll); refused with commands.require_signature")

    @field_validator("discovery_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        return plain_topic_prefix(value)


class Secrets(Section):
    """Resolved at load time from credentials or the environment; never from the YAML file."""

    secret_id: SecretStr | None = None
    secret_key: SecretStr | None = None
    session_token: SecretStr | None = None
    mqtt_password: SecretStr | None = None
    command_key: SecretStr | None = None


class Config(Section):
    device_id: str = Field(default_factory=socket.gethostname, description="default the hostname")
    state_dir: Path = Field(
        strict=False,
        default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR),
        description="job store and outbox; default $STATE_DIRECTORY (systemd StateDirectory=)",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    camera: CameraConfig = Field(default_factory=lambda: CameraConfig(type="files", path="/srv/frames"))
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    crop: CropConfig = Field(default_factory=CropConfig)
    enroll: EnrollConfig = Field(default_factory=EnrollConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    secrets: Secrets = Field(default_factory=Secrets)

    @field_validator("device_id")
    @classmethod
    def _device_id_chars(cls, value: str) -> str:
        if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("must be 1-64 characters of letters, digits, - _ .")
        return value

    @model_validator(mode="after")
    def _command_key_usable(self) -> Config:
        key = self.secrets.command_key
        if key is not None and len(key.get_secret_value()) < MIN_COMMAND_KEY_CHARS:
            raise ValueError(f"secrets.command_key: the command_hmac_key credential must be at least {MIN_COMMAND_KEY_CHARS} characters")
        if self.commands.require_signature and key is None:
            raise ValueError("commands.require_signature: set, but there is no command_hmac_key credential to check signatures with")
        return self

    @model_validator(mode="after")
    def _home_assistant_enroll(self) -> Config:
        if self.home_assistant.allow_enroll and self.commands.require_signature:
            raise ValueError("home_assistant.allow_enroll: Home Assistant cannot sign commands, and commands.require_signature is on")
        if self.home_assistant.allow_enroll and not self.home_assistant.discovery:
            raise ValueError("home_assistant.allow_enroll: needs home_assistant.discovery (the text entity is announced by it)")
        return self

    @property
    def base_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}"

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret shown only as set / not set."""
        data = self.model_dump(mode="json", exclude={"secrets"})
        data["secrets"] = {
            name: ("<set>" if getattr(self.secrets, name) is not None else None) for name in Secrets.model_fields
        }
        return data


def read_secrets(environ: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Resolve every secret: `$CREDENTIALS_DIRECTORY/<name>` first, then the environment variable.

    A credential file may end with one newline (as `echo` writes it); any other surrounding
    whitespace is refused, because the cloud then fails with an obscure signature error. An empty
    file or variable means "not set" (the installer creates every credential file, empty).
    """
    found: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    for field, (cred_name, env_name) in SECRET_SOURCES.items():
        value: str | None = None
        source = ""
        if cred_dir and (Path(cred_dir) / cred_name).is_file():
            source = f"credential {cred_name} in {cred_dir}"
            try:
                value = (Path(cred_dir) / cred_name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((f"secrets.{field}", f"{source} cannot be read: {exc.__class__.__name__}"))
                continue
            if value.endswith("\n"):
                value = value[:-1]
        elif env_name in environ:
            source = f"environment variable {env_name}"
            value = environ[env_name]
        if not value:
            continue
        if value != value.strip():
            problems.append((f"secrets.{field}", f"{source} has leading or trailing whitespace"))
        else:
            found[field] = value
    return found, problems


def detector_reach_problem(config: Config) -> tuple[str, str] | None:
    """(key, reason) when `quality.min_face_px` accepts faces smaller than the detector finds (see `smallest_face_px`)."""
    cam, det = config.camera, config.detector
    capture = (cam.width, cam.height)
    stream = (cam.lores_width, cam.lores_height) if cam.type == "picamera2" else None
    smallest = math.ceil(smallest_face_px(capture, (det.input_width, det.input_height), det.cascade, stream) - 1e-9)
    if config.quality.min_face_px >= smallest:
        return None
    seen_by = f"camera.width x height {capture[0]}x{capture[1]}"
    if stream:
        seen_by += f", camera.lores_width x lores_height {stream[0]}x{stream[1]}"
    seen_by += f", detector.input_width x input_height {det.input_width}x{det.input_height}, detector.cascade {str(det.cascade).lower()}"
    grow = "detector.input_width/input_height" + (" and camera.lores_width/lores_height" if stream else "")
    return "quality.min_face_px", (
        f"{config.quality.min_face_px:g} px accepts faces the detector cannot see: with {seen_by} the smallest face it finds "
        f"is {smallest} px; raise quality.min_face_px to {smallest}" + ("" if det.cascade else ", turn on detector.cascade")
        + f" or enlarge {grow}"
    )


def _problem(error: Any) -> tuple[str, str]:
    """(dotted key path, reason) of one pydantic error; a validator's "key: reason" message names its own key."""
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return path, "unknown key"
    typed = type_reason(error)
    if typed is not None:
        return path or "<root>", typed
    reason = str(error["msg"]).removeprefix("Value error, ")
    named = re.match(r"^([a-z_][a-z0-9_.]*): (.*)$", reason, re.DOTALL)
    if error["type"] == "value_error" and named:
        return ".".join(p for p in (path, named[1]) if p), named[2]
    return path or "<root>", reason


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the configuration; raise `ConfigError` listing every problem."""
    env = os.environ if environ is None else environ
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("<file>", f"{path} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("<file>", f"{path} cannot be read: {exc}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("<file>", f"{path} is not valid YAML: {exc}")]) from None
    return config_from_mapping({} if raw is None else raw, env)


def config_from_mapping(raw: Any, environ: Mapping[str, str]) -> Config:
    """Validate already-parsed YAML data plus the secrets found in `environ`."""
    if not isinstance(raw, dict):
        raise ConfigError([("<root>", f"must be a mapping of keys, got {type(raw).__name__}")])
    problems: list[tuple[str, str]] = []
    if "secrets" in raw:
        problems.append(("secrets", "secrets never live in the YAML file: use credential files or environment variables"))
        raw = {k: v for k, v in raw.items() if k != "secrets"}
    secrets, secret_problems = read_secrets(environ)
    problems.extend(secret_problems)
    data = dict(raw)
    data["secrets"] = secrets
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.append(_problem(error))
        raise ConfigError(problems) from None
    reach = detector_reach_problem(config)
    if reach:
        problems.append(reach)
    if problems:
        raise ConfigError(problems)
    return config


def config_path_from(arg: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """`--config`, else `$FACEAGENT_CONFIG`, else /etc/faceagent/agent.yaml."""
    env = os.environ if environ is None else environ
    return Path(arg or env.get("FACEAGENT_CONFIG") or DEFAULT_CONFIG_PATH)


def require_cloud_secrets(config: Config, credentials_dir: Path | None = None) -> None:
    """Raise `ConfigError` unless the cloud SecretId and SecretKey were found (`credentials_dir`: the folder read)."""
    folder = str(credentials_dir) if credentials_dir is not None else "$CREDENTIALS_DIRECTORY"
    missing = [
        (f"secrets.{name}", f"not set: put it in {folder}/{SECRET_SOURCES[name][0]} or ${SECRET_SOURCES[name][1]}")
        for name in ("secret_id", "secret_key")
        if getattr(config.secrets, name) is None
    ]
    if missing:
        raise ConfigError(missing)
