"""The sections of the configuration file: strict, typed, every key with its bounds and meaning."""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.config.messages import yaml_spelling
from agent.config.urls import is_loopback, parse_broker_url


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
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:  # what the MQTT client will load: a file that is not a certificate or key fails here, not at run time
            if self.ca_file is not None:
                context.load_verify_locations(cafile=str(self.ca_file))
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"ca_file: {self.ca_file} holds no usable certificate ({exc})") from None
        try:
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"cert_file: {self.cert_file} and key_file {self.key_file} are not a certificate and its key ({exc})") from None
        return self


class MqttConfig(Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port, or mqtts://host:port for TLS")
    topic_prefix: str = Field("faceagent", min_length=1, max_length=64, description="topics are <prefix>/<device_id>/...")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT version; 5 falls back to 3.1.1 when the broker refuses 5")
    username: str | None = Field(None, description="password comes from the mqtt_password credential")
    client_id: str | None = Field(None, min_length=1, max_length=128, description="default faceagent-<device_id>; must be unique per device")
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
    def _consistent(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s: must be >= reconnect_min_s")
        if self.topic_prefix.startswith("$"):
            raise ValueError("topic_prefix: $-topics belong to the broker; clients cannot publish there")
        if not parse_broker_url(self.url).tls and any((self.tls.ca_file, self.tls.cert_file, self.tls.key_file)):
            raise ValueError("tls: certificates are set but mqtt.url is mqtt:// (plain TCP): use mqtts://")
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

    @model_validator(mode="after")
    def _budgets_in_order(self) -> CloudConfig:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s: must be <= backoff_max_s")
        if self.deadline_s < self.read_timeout_s:
            raise ValueError("deadline_s: must be >= read_timeout_s (one attempt must fit in the budget)")
        return self

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


    @model_validator(mode="after")
    def _brightness_order(self) -> QualityConfig:
        if self.min_brightness > self.max_brightness:
            raise ValueError("min_brightness: must be <= max_brightness (every face would be refused)")
        return self


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
    unique_person_control: int = Field(
        2, ge=0, le=4, description="UniquePersonControl of create_person (a command's create_person.unique_person_control overrides it): "
        "1-4 refuse a face that already belongs to another person at a false-match rate of 1 %, 0.1 %, 0.01 %, 0.001 %; 0 off")


class LivenessConfig(Section):
    """Whether a crop is checked for a live face (IAI DetectLiveFaceAccurate, billed per call) before anything is written."""

    mode: Literal["off", "cloud"] = Field("off", description="cloud: every crop is checked with DetectLiveFaceAccurate (API 2020-03-03, "
                                          "billed per call, iai:DetectLiveFaceAccurate in the key's CAM policy) before any write")
    threshold: float = Field(40.0, ge=0, le=100, description="a liveness score below this ends the command spoof_suspected "
                             "(IAI's tiers 5/10/40/70/90; 40 is its recommendation)")

    @field_validator("mode", mode="before")
    @classmethod
    def _off_as_text(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads an unquoted `off` as false


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

    def revealed(self) -> list[str]:
        """Every secret that is set, in clear: the values log redaction must strip."""
        return [value.get_secret_value() for value in (getattr(self, name) for name in type(self).model_fields) if value is not None]
