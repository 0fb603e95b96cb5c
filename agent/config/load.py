"""The one configuration loader: YAML file + credentials -> a validated `Config`, or every problem at once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.config.camera import CAMERA_TYPES
from agent.config.messages import describe_yaml, type_reason
from agent.config.reach import detector_reach_problem
from agent.config.schema import Config
from agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/faceagent/agent.yaml")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

# (credential file name, environment variable) per secret, in lookup order (README, "Configuration").
SECRET_SOURCES: dict[str, tuple[str, str]] = {
    "secret_id": ("tencentcloud_secret_id", "TENCENTCLOUD_SECRET_ID"),
    "secret_key": ("tencentcloud_secret_key", "TENCENTCLOUD_SECRET_KEY"),
    "session_token": ("tencentcloud_session_token", "TENCENTCLOUD_SESSION_TOKEN"),
    "mqtt_password": ("mqtt_password", "FACEAGENT_MQTT_PASSWORD"),
    "command_key": ("command_hmac_key", "FACEAGENT_COMMAND_KEY"),
}


def read_secrets(environ: Mapping[str, str], sources: dict[str, str] | None = None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Resolve every secret: `$CREDENTIALS_DIRECTORY/<name>` first, then the environment variable.

    A credential file may end with one newline (as `echo` writes it); any other surrounding
    whitespace, and any control character inside, is refused, because the cloud then fails with an
    obscure signature error (or the value would be echoed in an HTTP library's header error). An empty
    file or variable means "not set" (the installer creates every credential file, empty): an empty file falls
    through to the environment variable. `sources`, when given, receives where each secret found came from.
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
        if not value and environ.get(env_name):  # an empty file (install.sh creates them all) does not hide the variable
            source = f"environment variable {env_name}"
            value = environ[env_name]
        if not value:
            continue
        if value != value.strip():
            problems.append((f"secrets.{field}", f"{source} has leading or trailing whitespace"))
        elif any(ord(c) < 32 or ord(c) == 127 for c in value):  # a line break inside would end an HTTP header early
            problems.append((f"secrets.{field}", f"{source} holds a control character (a line break or tab inside the value)"))
        else:
            found[field] = value
            if sources is not None:
                sources[field] = source
    return found, problems


def _problem(error: Any) -> tuple[str, str]:
    """(dotted key path, reason) of one pydantic error; a validator's "key: reason" message names its own key."""
    loc = [str(part) for part in error["loc"]]
    if loc[:1] == ["camera"] and loc[1:2] and loc[1] in CAMERA_TYPES:
        del loc[1]  # the camera kind pydantic names: the YAML has no such level
    path = ".".join(loc)
    if error["type"] == "union_tag_invalid":  # camera.type
        kinds = [f'"{kind}"' for kind in CAMERA_TYPES]
        return f"{path}.type", f"expected {', '.join(kinds[:-1])} or {kinds[-1]}; read {describe_yaml(error['input'].get('type'))}"
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
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader that refuses repeated keys
    except yaml.YAMLError as exc:
        raise ConfigError([("<file>", f"{path} is not valid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([("<file>", f"{path} is nested too deeply to be a faceagent configuration")]) from None
    try:
        return config_from_mapping({} if raw is None else raw, env)
    except RecursionError:  # a deeply nested value under a known key
        raise ConfigError([("<file>", f"{path} holds a value nested too deeply to be a faceagent setting")]) from None


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
