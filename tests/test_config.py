"""Strict config: every key of the example, unknown keys and bad types named, secrets resolved and redacted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import Config, FilesCamera, OpenCvCamera, Picamera2Camera, config_from_mapping, load_config
from agent.errors import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "agent.example.yaml"
KEYS = {"TENCENTCLOUD_SECRET_ID": "AKIDexampleexampleexample", "TENCENTCLOUD_SECRET_KEY": "very-secret-key-value-123"}


def problems_of(raw: object, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, env or {})
    return info.value.problems


def test_example_config_is_valid_and_lists_every_key() -> None:
    config = load_config(EXAMPLE, KEYS)
    assert config.device_id == "cam-01"
    assert config.cloud.version == "2018-03-01"
    example = yaml.safe_load(EXAMPLE.read_text())

    def keys(model: object, data: dict[str, object], prefix: str) -> None:
        for name, field in type(model).model_fields.items():  # type: ignore[attr-defined]
            if name == "secrets":
                continue
            assert name in data, f"{prefix}{name} missing from the example config"
            value = getattr(model, name)
            if hasattr(type(value), "model_fields"):
                keys(value, data[name], f"{prefix}{name}.")  # type: ignore[arg-type]
            elif name not in {"device_id", "path", "state_dir", "type"}:
                # The example shows every default.
                assert data[name] == (field.default if not isinstance(field.default, Path) else str(field.default)), f"{prefix}{name}"

    keys(Config(camera={"type": "files", "path": "/srv/frames"}), example, "")
    for camera in (OpenCvCamera(type="opencv"), Picamera2Camera(type="picamera2")):  # one file lists the keys of every kind
        keys(camera, example["camera"], "camera.")


def test_unknown_keys_and_wrong_types_are_all_reported_with_paths() -> None:
    problems = dict(problems_of({"mqtt": {"url": "mqtt://h:1", "bogus": 1, "keepalive_s": "soon"}, "detectr": {}, "cloud": {"version": "2019"}}))
    assert problems["mqtt.bogus"] == "unknown key"
    assert problems["detectr"] == "unknown key"
    assert "mqtt.keepalive_s" in problems
    assert "cloud.version" in problems
    assert len(problems) == 4


def test_obvious_yaml_spellings_are_accepted(tmp_path: Path) -> None:
    """YAML reads `5` as an integer, an unquoted date as a date, and people write log levels in lower case."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("mqtt:\n  protocol: 5\ncloud:\n  version: 2020-03-03\nlogging:\n  level: info\ncamera:\n  type: files\n  path: /x\n")
    config = load_config(cfg, {})
    assert (config.mqtt.protocol, config.cloud.version, config.logging.level) == ("5", "2020-03-03", "INFO")
    cfg.write_text("mqtt:\n  protocol: 3.1.1\ncloud:\n  version: 2018-03-01\nlogging:\n  level: Warning\n")
    config = load_config(cfg, {})
    assert (config.mqtt.protocol, config.cloud.version, config.logging.level) == ("3.1.1", "2018-03-01", "WARNING")


def test_other_types_are_refused_saying_what_was_read_and_what_is_expected(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text('detector:\n  threads: "2"\nmqtt:\n  protocol: 4\n  keepalive_s: soon\ncloud:\n  version: 2019-01-01\n'
                   'camera:\n  loop: "true"\ndevice_id: 0012\nlogging:\n  level: loud\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {})
    problems = dict(info.value.problems)
    assert problems["detector.threads"] == 'expected an integer; read the string "2" (write it without quotes)'
    assert problems["mqtt.protocol"] == 'expected "5" or "3.1.1"; read the integer 4'
    assert problems["mqtt.keepalive_s"] == 'expected an integer; read the string "soon"'
    assert problems["cloud.version"] == 'expected "2018-03-01" or "2020-03-03"; read the date 2019-01-01'
    assert problems["camera.loop"] == 'expected true or false; read the string "true" (write it without quotes)'
    # 0012 is the octal 10 to YAML 1.1: quoting is the only safe reading of an identifier
    assert problems["device_id"] == "expected text; read the integer 10 (put it in quotes: YAML read it as a number or date)"
    assert problems["logging.level"].startswith('expected "DEBUG", "INFO", "WARNING" or "ERROR"; read the string "loud"')


def test_secrets_in_yaml_are_refused() -> None:
    problems = dict(problems_of({"secrets": {"secret_key": "x"}}))
    assert "never live in the YAML" in problems["secrets"]


def test_secret_with_whitespace_is_refused(tmp_path: Path) -> None:
    problems = dict(problems_of({}, {"TENCENTCLOUD_SECRET_KEY": " key-with-space"}))
    assert "whitespace" in problems["secrets.secret_key"]


def test_credentials_directory_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "tencentcloud_secret_key").write_text("from-credential-file\n")  # one trailing newline is fine
    config = config_from_mapping({}, {"CREDENTIALS_DIRECTORY": str(tmp_path), "TENCENTCLOUD_SECRET_KEY": "from-env"})
    assert config.secrets.secret_key is not None
    assert config.secrets.secret_key.get_secret_value() == "from-credential-file"


def test_credential_file_with_extra_whitespace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text("pw\n\n")
    problems = dict(problems_of({}, {"CREDENTIALS_DIRECTORY": str(tmp_path)}))
    assert "credential mqtt_password" in problems["secrets.mqtt_password"]


def test_empty_credential_means_not_set(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text("")
    config = config_from_mapping({}, {"CREDENTIALS_DIRECTORY": str(tmp_path), "TENCENTCLOUD_SECRET_ID": ""})
    assert config.secrets.mqtt_password is None and config.secrets.secret_id is None


def test_state_dir_defaults_to_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert config_from_mapping({}, {}).state_dir == tmp_path


def test_files_camera_needs_a_path() -> None:
    problems = dict(problems_of({"camera": {"type": "files"}}))
    assert problems.get("camera.path", "").startswith("required when camera.type is files")


@pytest.mark.parametrize(("kind", "model"), [("files", FilesCamera), ("opencv", OpenCvCamera), ("picamera2", Picamera2Camera)])
def test_the_example_camera_section_serves_every_kind(kind: str, model: type[object]) -> None:
    """`camera.type` picks a model with only that kind's settings; the example's keys of the other kinds still load."""
    example = yaml.safe_load(EXAMPLE.read_text())
    example["camera"]["type"] = kind
    camera = config_from_mapping(example, KEYS).camera
    assert type(camera) is model and camera.width == 1280
    assert hasattr(camera, "lores_width") == (kind == "picamera2") and hasattr(camera, "loop") == (kind == "files")


def test_camera_problems_name_their_keys_whichever_kind_they_belong_to() -> None:
    problems = dict(problems_of({"camera": {"type": "files", "path": "/x", "loop": "yes", "lores_width": "320", "rotation": 180,
                                            "device": -1, "bogus": 1}}))
    assert problems == {
        "camera.loop": 'expected true or false; read the string "yes"',
        "camera.lores_width": 'expected an integer; read the string "320" (write it without quotes)',
        "camera.rotation": "applied by picamera2 only (camera.type: picamera2)",
        "camera.device": "-1 is not a camera index (0-63)",
        "camera.bogus": "unknown key",
    }
    assert problems_of({"camera": {"type": "webcam"}}) == [("camera.type", 'expected "picamera2", "opencv" or "files"; read the string "webcam"')]
    assert problems_of({"camera": {"type": "picamera2", "width": 1281}}) == [("camera.width", "picamera2 needs even sizes (camera.width 1281)")]


def test_bad_mqtt_url_and_tls_pairing_are_named() -> None:
    problems = dict(problems_of({"mqtt": {"url": "tcp://x", "tls": {"cert_file": "/c.pem"}}}))
    assert "mqtt.url" in problems
    assert any(path.startswith("mqtt.tls") for path in problems)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad, {})
    bad.write_text("mqtt: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, {})


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_check_config_prints_redacted_config_and_exits_0(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **KEYS}
    proc = run_cli("check-config", "--config", str(EXAMPLE), env=env)
    assert proc.returncode == 0, proc.stderr
    assert KEYS["TENCENTCLOUD_SECRET_KEY"] not in proc.stdout + proc.stderr
    assert KEYS["TENCENTCLOUD_SECRET_ID"] not in proc.stdout + proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["secrets"]["secret_key"] == "<set>"
    assert printed["mqtt"]["topic_prefix"] == "faceagent"


def test_check_config_with_unknown_key_exits_78_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(EXAMPLE.read_text() + "\nmqtt_extra_setting: 1\n")
    proc = run_cli("check-config", "--config", str(cfg), env={"PATH": "/usr/bin:/bin", **KEYS})
    assert proc.returncode == 78
    assert "mqtt_extra_setting: unknown key" in proc.stderr


def test_check_config_without_cloud_keys_exits_78() -> None:
    proc = run_cli("check-config", "--config", str(EXAMPLE), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 78
    assert "secrets.secret_key" in proc.stderr


def installed_layout(tmp_path: Path, keys: dict[str, str]) -> Path:
    """etc/faceagent/agent.yaml with its credentials folder beside it, as install.sh lays them out."""
    etc = tmp_path / "etc" / "faceagent"
    (etc / "credentials").mkdir(parents=True, mode=0o700)
    (etc / "agent.yaml").write_text(EXAMPLE.read_text())
    for name, value in keys.items():
        (etc / "credentials" / name).write_text(value)
    return etc


def test_check_config_reads_the_installed_credentials_beside_the_config(tmp_path: Path) -> None:
    etc = installed_layout(tmp_path, {"tencentcloud_secret_id": KEYS["TENCENTCLOUD_SECRET_ID"],
                                      "tencentcloud_secret_key": KEYS["TENCENTCLOUD_SECRET_KEY"] + "\n"})
    proc = run_cli("check-config", "--config", str(etc / "agent.yaml"), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"# credentials from {etc / 'credentials'}"
    assert yaml.safe_load(proc.stdout)["secrets"]["secret_key"] == "<set>"
    assert KEYS["TENCENTCLOUD_SECRET_KEY"] not in proc.stdout + proc.stderr


def test_check_config_names_the_credentials_folder_it_read(tmp_path: Path) -> None:
    etc = installed_layout(tmp_path, {"tencentcloud_secret_id": KEYS["TENCENTCLOUD_SECRET_ID"]})
    proc = run_cli("check-config", "--config", str(etc / "agent.yaml"), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 78
    assert f"secrets.secret_key: not set: put it in {etc / 'credentials'}/tencentcloud_secret_key" in proc.stderr
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "tencentcloud_secret_id").write_text(KEYS["TENCENTCLOUD_SECRET_ID"])
    (other / "tencentcloud_secret_key").write_text(KEYS["TENCENTCLOUD_SECRET_KEY"])
    proc = run_cli("check-config", "--config", str(etc / "agent.yaml"), "--credentials-dir", str(other), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.startswith(f"# credentials from {other}\n"), proc.stderr
    proc = run_cli("check-config", "--config", str(etc / "agent.yaml"), "--credentials-dir", str(tmp_path / "none"),
                   env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 78 and f"--credentials-dir {tmp_path / 'none'}: not a folder this user can read" in proc.stderr


def test_check_config_by_a_user_who_cannot_read_the_installed_credentials_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The installed layout: credentials/ is root's only. An operator without sudo is told so, naming the folder."""
    from agent.cli import main

    etc = installed_layout(tmp_path, {"tencentcloud_secret_id": "AKIDonlyroot"})
    real_access = os.access
    # What the kernel answers a user other than root for a 0700 root folder (root itself may read anything).
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == etc / "credentials" else real_access(path, mode))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["check-config", "--config", str(etc / "agent.yaml")]) == 78
    err = capsys.readouterr().err
    assert f"{etc / 'credentials'} is readable by root only" in err and "sudo" in err
    assert "secrets.secret_id: not set" in err  # the file there was not read


def test_config_path_from_environment(tmp_path: Path) -> None:
    proc = run_cli("check-config", env={"PATH": "/usr/bin:/bin", "FACEAGENT_CONFIG": str(tmp_path / "none.yaml"), **KEYS})
    assert proc.returncode == 78
    assert "none.yaml does not exist" in proc.stderr


def test_configuration_reference_is_generated_from_the_schema() -> None:
    from agent.config_reference import render

    assert (REPO / "docs" / "configuration.md").read_text() == render(), "run: python -m agent.config_reference > docs/configuration.md"


@pytest.mark.parametrize("depth", [1000, 100000])
def test_a_config_nested_beyond_reason_is_a_config_error_not_a_crash(tmp_path: Path, depth: int) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("device_id: " + "[" * depth + "]" * depth + "\n")  # a 2 KB file can exhaust a recursive parser
    for verb in ("check-config", "run"):
        proc = run_cli(verb, "--config", str(cfg), env={"PATH": "/usr/bin:/bin", **KEYS})
        assert proc.returncode == 78 and "nested too deeply" in proc.stderr and "Traceback" not in proc.stderr, (verb, proc.stderr[-300:])


def test_liveness_section_reads_yaml_off_needs_a_region_and_bounds_its_threshold() -> None:
    assert config_from_mapping(yaml.safe_load("liveness: {mode: off}"), {}).liveness.mode == "off"  # YAML's unquoted off is false
    assert config_from_mapping({"liveness": {"mode": "cloud", "threshold": 70}}, {}).liveness.threshold == 70
    assert dict(problems_of({"liveness": {"mode": "cloud"}, "cloud": {"region": ""}}))["liveness.mode"].startswith(
        "cloud calls DetectLiveFaceAccurate (API 2020-03-03), which needs cloud.region")
    problems = dict(problems_of({"liveness": {"mode": "on", "threshold": 101}, "enroll": {"unique_person_control": 5}}))
    assert {"liveness.mode", "liveness.threshold", "enroll.unique_person_control"} <= set(problems), problems
