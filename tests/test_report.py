"""`faceagent doctor --report FILE`: the field report's schema on this machine, with the files camera (the real
command, as a user runs it) and with the picamera2 fake (camera modules, sensor modes, the streams libcamera
settled on); secrets put in the environment, the credentials folder and a failing hardware test's output never
reach the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.doctor_report import SCHEMA, SECTIONS, build_report
from agent.config import config_from_mapping
from tests import fake_picamera2
from tests.conftest import DATA, REPO

SECRET_KEY = "report-secret-key-0123456789"
SECRET_ID = "AKIDreportsecretid987"
MQTT_PASSWORD = "report-mqtt-password-42"
HMAC_KEY = "report-command-hmac-key-77"

HW_TEST = '''
import os
import pytest

@pytest.mark.hw
def test_board_camera() -> None:
    print("environment seen by the test:", dict(os.environ))
    assert False, "camera 0 gave no frame; key " + os.environ.get("TENCENTCLOUD_SECRET_KEY", "")

@pytest.mark.hw
def test_board_sensor() -> None:
    pass
'''


def device(tmp_path: Path) -> Path:
    """agent.yaml with its root-only credentials folder beside it (as the package installs it), on the files camera."""
    etc = tmp_path / "etc"
    creds = etc / "credentials"
    creds.mkdir(parents=True, mode=0o700)
    for name, value in (("tencentcloud_secret_id", SECRET_ID), ("tencentcloud_secret_key", SECRET_KEY),
                        ("mqtt_password", MQTT_PASSWORD), ("command_hmac_key", HMAC_KEY)):
        (creds / name).write_text(value)
    config = {"device_id": "cam-field", "state_dir": str(tmp_path / "state"),
              "mqtt": {"url": "mqtt://127.0.0.1:1", "username": "field"},
              "camera": {"type": "files", "path": str(DATA / "grace_hopper.jpg")}}
    (etc / "agent.yaml").write_text(yaml.safe_dump(config))
    return etc / "agent.yaml"


def hw_tests_folder(tmp_path: Path) -> Path:
    """A tests folder as a clone has one: a conftest and hardware tests, one of which fails printing the environment."""
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    (tests / "conftest.py").write_text("def pytest_configure(config):\n    config.addinivalue_line('markers', 'hw: board')\n")
    (tests / "test_board.py").write_text(HW_TEST)
    return tests


def check_schema(report: dict[str, Any]) -> None:
    assert list(report) == list(SECTIONS) and report["schema"] == SCHEMA
    assert report["faceagent"]["version"] and report["faceagent"]["installed_as"] in ("deb", "pip", "source checkout")
    assert report["board"]["cores"] >= 1 and report["board"]["memory_mb"] > 0 and report["board"]["machine"]
    assert report["os"]["python"].startswith("3.") and isinstance(report["kernel"]["release"], str)
    ort = report["onnxruntime"]
    assert ort["version"] and "CPUExecutionProvider" in ort["providers"] and isinstance(ort["cpu"]["features"], list)
    assert ort["threads"] >= 1
    assert report["packages"]["onnxruntime"] == ort["version"] and report["packages"]["cv2"]
    detector = report["detector"]
    assert detector["threads"] == ort["threads"] and detector["frames"] > 0
    assert 0 < detector["ms_per_frame"]["min"] <= detector["ms_per_frame"]["median"] <= detector["ms_per_frame"]["p90"]
    memory = report["memory"]
    assert memory["dry_run"]["status"] and memory["rss_mb"] > 0 and memory["peak_rss_mb"] >= memory["rss_mb"]
    assert all({"check", "status", "detail"} <= set(c) for c in report["checks"])
    assert report["config"]["device_id"] and "secrets" in report["config"]


def test_report_from_the_command_on_the_files_camera_has_every_section_and_no_secret(tmp_path: Path) -> None:
    config_file = device(tmp_path)
    out = tmp_path / "report.json"
    env = {"PATH": os.environ["PATH"], "TENCENTCLOUD_SECRET_KEY": SECRET_KEY, "FACEAGENT_MQTT_PASSWORD": MQTT_PASSWORD}
    proc = subprocess.run([sys.executable, "-m", "agent", "doctor", "--config", str(config_file), "--skip", "broker",
                           "--skip", "cloud", "--report", str(out), "--tests", str(hw_tests_folder(tmp_path))],
                          capture_output=True, text=True, timeout=300, check=False, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"field report written to {out}" in proc.stderr
    text = out.read_text()
    report = json.loads(text)
    check_schema(report)
    assert report["camera"] == {"type": "files", "description": f"files {DATA / 'grace_hopper.jpg'}",
                                "frame": {"main": [512, 600], "detect": None}}
    assert report["detector"]["frames_from"] == "camera" and report["detector"]["faces_in_last_frame"] == 1
    assert report["memory"]["dry_run"] == {"status": "dry_run", "error": None}  # one face, chosen: nothing sent anywhere
    assert [c["check"] for c in report["checks"]] == ["credentials", "model", "camera", "broker", "cloud", "clock", "disk", "identity"]
    hw = report["hw_tests"]
    assert hw["ran"] and hw["exit_code"] == 1 and hw["command"] == "pytest -m hw test_board.py"
    outcomes = {t["test"].rsplit(".", 1)[1]: t["outcome"] for t in hw["tests"]}
    assert outcomes == {"test_board_camera": "failed", "test_board_sensor": "passed"}
    # The failing test printed the whole environment and the key: the report shows where, never what.
    assert "<redacted>" in json.dumps(hw)
    for secret in (SECRET_KEY, SECRET_ID, MQTT_PASSWORD, HMAC_KEY):
        assert secret not in text
    assert report["config"]["secrets"]["secret_key"] == "<set>" and report["config"]["secrets"]["mqtt_password"] == "<set>"


def test_report_with_the_picamera2_fake_names_modules_sensor_modes_and_settled_streams(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_picamera2.install(monkeypatch, platform="pi4", sensor="imx708")
    config = config_from_mapping({"device_id": "cam-pi", "state_dir": str(tmp_path / "state"),
                                  "camera": {"type": "picamera2", "width": 1280, "height": 720}},
                                 {"TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY})
    report = build_report(config, [], tests_dir=tmp_path / "no-tests", environ={"TENCENTCLOUD_SECRET_KEY": SECRET_KEY})
    check_schema(report)
    camera = report["camera"]
    assert [m["Model"] for m in camera["modules"]] == ["imx708"]
    assert camera["sensor_modes"] and all({"size", "bit_depth", "fps", "crop"} <= set(m) for m in camera["sensor_modes"])
    streams = camera["streams"]
    assert streams["main"] == [1280, 720] and streams["lores"] == [320, 180] and streams["sensor_mode"]["size"]
    assert [streams["sensor_mode"]["size"], streams["sensor_mode"]["bit_depth"]] in [[m["size"], m["bit_depth"]] for m in camera["sensor_modes"]]
    assert streams["lores_encoding"] and 0 < streams["field_of_view"]["width"] <= 1
    assert camera["frame"] == {"main": [1280, 720], "detect": [320, 180]}
    assert report["detector"]["frames_from"] == "camera"
    assert report["hw_tests"] == {"ran": False, "why": "the tests are not installed (the package ships none): run it from a "
                                                       "clone with --tests tests, in a venv with pytest"}
    assert SECRET_KEY not in json.dumps(report) and SECRET_ID not in json.dumps(report)


def test_report_into_a_missing_folder_is_refused_naming_the_option(tmp_path: Path) -> None:
    config_file = device(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "agent", "doctor", "--config", str(config_file), "--skip", "broker", "--skip",
                           "cloud", "--report", str(tmp_path / "missing" / "report.json")],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert proc.returncode == 2 and f"--report {tmp_path / 'missing' / 'report.json'}: the folder" in proc.stderr, proc.stderr
