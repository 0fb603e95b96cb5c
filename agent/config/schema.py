"""The whole configuration: its sections, the secrets found for it, and the rules that span sections."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from agent.config.camera import CameraConfig, FilesCamera
from agent.config.sections import (
    CloudConfig,
    CommandsConfig,
    CropConfig,
    DetectorConfig,
    EnrollConfig,
    HomeAssistantConfig,
    LivenessConfig,
    LoggingConfig,
    MqttConfig,
    QualityConfig,
    Secrets,
    Section,
    SelectionConfig,
)

DEFAULT_STATE_DIR = Path("/var/lib/faceagent")
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"  # a topic level and a signed field: ASCII only
MIN_COMMAND_KEY_CHARS = 16  # an HMAC key an operator cannot guess; 32 random characters recommended


class Config(Section):
    device_id: str = Field(default_factory=socket.gethostname, description="default the hostname")
    state_dir: Path = Field(
        strict=False,
        default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR),
        description="job store and outbox; default $STATE_DIRECTORY (systemd StateDirectory=)",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    camera: CameraConfig = Field(default_factory=lambda: FilesCamera(type="files", path="/srv/frames"))
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    crop: CropConfig = Field(default_factory=CropConfig)
    enroll: EnrollConfig = Field(default_factory=EnrollConfig)
    liveness: LivenessConfig = Field(default_factory=LivenessConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    secrets: Secrets = Field(default_factory=Secrets)

    @field_validator("camera", mode="before")
    @classmethod
    def _camera_type_default(cls, value: Any) -> Any:
        """`camera.type` picks the kind; a section without it is a files camera, as it always was."""
        return {"type": "files", **value} if isinstance(value, dict) and "type" not in value else value

    @field_validator("device_id")
    @classmethod
    def _device_id_chars(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_ID_PATTERN, value):
            raise ValueError("must be 1-64 characters of ASCII letters, digits, - _ .")
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

    @model_validator(mode="after")
    def _liveness_region(self) -> Config:
        if self.liveness.mode == "cloud" and not self.cloud.region:
            raise ValueError("liveness.mode: cloud calls DetectLiveFaceAccurate (API 2020-03-03), which needs cloud.region (e.g. ap-guangzhou)")
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
