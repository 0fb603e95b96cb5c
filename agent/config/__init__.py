"""The configuration: YAML file -> strict, typed, validated `Config` (docs/configuration.md).

Every section rejects unknown keys; every error is reported at once with its dotted key path.
Secrets never live in the YAML file: they are resolved from `$CREDENTIALS_DIRECTORY` (systemd
`LoadCredential=`), then the environment, and kept as `SecretStr` so they never print.

urls.py (broker and endpoint addresses), sections.py (one model per section), camera.py (one model per
camera type), schema.py (the whole
file and its cross-section rules), reach.py (what the detector can see), load.py (the loader),
messages.py (what a wrong YAML type is answered with).
"""

from agent.config.camera import CAMERA_TYPES, CameraConfig, FilesCamera, OpenCvCamera, Picamera2Camera
from agent.config.load import (
    DEFAULT_CONFIG_PATH,
    SECRET_SOURCES,
    config_from_mapping,
    config_path_from,
    load_config,
    read_secrets,
    require_cloud_secrets,
)
from agent.config.reach import detector_reach_problem, first_pass_scale, smallest_face_px
from agent.config.schema import DEFAULT_STATE_DIR, MIN_COMMAND_KEY_CHARS, Config
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
    MqttTls,
    QualityConfig,
    Secrets,
    Section,
    SelectionConfig,
    plain_topic_prefix,
)
from agent.config.urls import BrokerUrl, is_loopback, parse_broker_url

__all__ = [
    "CAMERA_TYPES",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "MIN_COMMAND_KEY_CHARS",
    "SECRET_SOURCES",
    "BrokerUrl",
    "CameraConfig",
    "CloudConfig",
    "CommandsConfig",
    "Config",
    "CropConfig",
    "DetectorConfig",
    "EnrollConfig",
    "FilesCamera",
    "HomeAssistantConfig",
    "LivenessConfig",
    "LoggingConfig",
    "MqttConfig",
    "MqttTls",
    "OpenCvCamera",
    "Picamera2Camera",
    "QualityConfig",
    "Secrets",
    "Section",
    "SelectionConfig",
    "config_from_mapping",
    "config_path_from",
    "detector_reach_problem",
    "first_pass_scale",
    "is_loopback",
    "load_config",
    "parse_broker_url",
    "plain_topic_prefix",
    "read_secrets",
    "require_cloud_secrets",
    "smallest_face_px",
]
