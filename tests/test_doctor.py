"""`faceagent doctor` against good and broken set-ups: real broker, emulator, files camera, the installed layout."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.common import Credentials
from agent.cli.doctor import run_checks
from agent.config import load_config
from tests.broker import Broker, free_port, password_tls_broker
from tests.conftest import DATA, EMU_ID, EMU_KEY
from tests.iai_helpers import control

ENV = {"PATH": "/usr/bin:/bin"}


def installed(tmp_path: Path, broker_url: str, emulator: Any, secret_key: str = EMU_KEY, **overrides: Any) -> Path:
    """etc/faceagent/agent.yaml with its root-only credentials folder beside it, as install.sh leaves a device."""
    etc = tmp_path / "etc" / "faceagent"
    creds = etc / "credentials"
    creds.mkdir(parents=True, mode=0o700)
    (creds / "tencentcloud_secret_id").write_text(EMU_ID)
    (creds / "tencentcloud_secret_key").write_text(secret_key)
    config = {"device_id": "cam-site", "state_dir": str(tmp_path / "state"), "mqtt": {"url": broker_url},
              "cloud": {"endpoint": emulator.base_url}, "camera": {"type": "files", "path": str(DATA / "grace_hopper.jpg")}}
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (etc / "agent.yaml").write_text(yaml.safe_dump(config))
    return etc / "agent.yaml"


def doctor(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "doctor", "--config", str(config_file), *args], capture_output=True, text=True,
                          timeout=120, check=False, env=ENV)


def lines_of(output: str) -> dict[str, str]:
    """check name -> its line (and fix line, joined)."""
    found: dict[str, str] = {}
    last = ""
    for line in output.splitlines()[1:-1]:
        if line.strip().startswith("fix:"):
            found[last] += " | " + line.strip()
        else:
            last = line.split()[1]
            found[last] = line
    return found


def test_doctor_on_a_good_set_up_passes_every_check(broker: Broker, emulator: Any, tmp_path: Path) -> None:
    config_file = installed(tmp_path, broker.url, emulator)
    proc = doctor(config_file)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = lines_of(proc.stdout)
    assert list(checks) == ["credentials", "model", "camera", "broker", "cloud", "clock", "disk", "identity"]
    assert all(line.split()[0] == "ok" for line in checks.values()), proc.stdout
    assert f"credentials from {config_file.parent / 'credentials'}" in checks["credentials"]
    assert "the bundled model, checksum verified" in checks["model"] and "512x600 upload frames" in checks["camera"]
    assert f"connected to {broker.url} (plain TCP, no TLS" in checks["broker"] and "keys accepted by" in checks["cloud"]
    assert proc.stdout.splitlines()[-1] == "all checks passed"
    as_json = json.loads(doctor(config_file, "--json").stdout)
    assert [c["status"] for c in as_json["checks"]] == ["ok"] * 8


def test_doctor_names_a_missing_camera_and_a_corrupt_model(broker: Broker, emulator: Any, tmp_path: Path) -> None:
    bad_model = tmp_path / "model.onnx"
    bad_model.write_bytes(b"not a model")
    config_file = installed(tmp_path, broker.url, emulator, camera={"type": "opencv", "device": "/dev/video9"},
                            detector={"model_path": str(bad_model)})
    proc = doctor(config_file)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = lines_of(proc.stdout)
    assert checks["camera"].split()[0] == "FAIL" and "/dev/video9" in checks["camera"] and "fix:" in checks["camera"]
    assert checks["model"].split()[0] == "FAIL" and "cannot be loaded" in checks["model"] and "check detector.model_path" in checks["model"]
    assert checks["broker"].split()[0] == "ok" and checks["cloud"].split()[0] == "ok"  # one failure does not hide the others
    assert proc.stdout.splitlines()[-1].startswith("2 check(s) failed (model, camera)")
    skipped = doctor(config_file, "--skip", "camera", "--skip", "model")
    assert skipped.returncode == 0 and lines_of(skipped.stdout)["camera"].split()[0] == "skip"


def test_doctor_tells_an_untrusted_broker_certificate_from_refused_credentials(emulator: Any, tmp_path: Path) -> None:
    private, tls_port, pki, other = password_tls_broker(tmp_path, {"cam-site": "right-password"})
    private.start()
    try:
        wrong_ca = installed(tmp_path / "a", f"mqtts://127.0.0.1:{tls_port}", emulator,
                             mqtt={"tls": {"ca_file": str(other["ca"])}, "username": "cam-site"})
        (wrong_ca.parent / "credentials" / "mqtt_password").write_text("right-password")
        broker_line = lines_of(doctor(wrong_ca, "--skip", "camera").stdout)["broker"]
        assert broker_line.split()[0] == "FAIL" and f"not trusted by mqtt.tls.ca_file {other['ca']}" in broker_line
        assert "fix: set mqtt.tls.ca_file to the CA that signed the broker's certificate" in broker_line
        refused = installed(tmp_path / "b", f"mqtts://127.0.0.1:{tls_port}", emulator,
                            mqtt={"tls": {"ca_file": str(pki["ca"])}, "username": "cam-site"})
        (refused.parent / "credentials" / "mqtt_password").write_text("wrong-password")
        broker_line = lines_of(doctor(refused, "--skip", "camera").stdout)["broker"]
        assert broker_line.split()[0] == "FAIL" and "refused the connection" in broker_line and "mqtt_password" in broker_line
        (refused.parent / "credentials" / "mqtt_password").write_text("right-password")
        broker_line = lines_of(doctor(refused, "--skip", "camera").stdout)["broker"]
        assert broker_line.split()[0] == "ok" and "TLS, certificate verified, user cam-site" in broker_line
        nothing = installed(tmp_path / "c", f"mqtt://127.0.0.1:{free_port()}", emulator)
        broker_line = lines_of(doctor(nothing, "--skip", "camera").stdout)["broker"]
        assert broker_line.split()[0] == "FAIL" and "cannot connect" in broker_line and "is the broker running" in broker_line
    finally:
        private.stop()


def test_doctor_reports_refused_keys(broker: Broker, emulator: Any, tmp_path: Path) -> None:
    proc = doctor(installed(tmp_path, broker.url, emulator, secret_key="not-the-key-of-this-account"), "--skip", "camera")
    assert proc.returncode == 1
    checks = lines_of(proc.stdout)
    assert checks["cloud"].split()[0] == "FAIL" and "AuthFailure.SignatureFailure" in checks["cloud"]
    assert "fix: check tencentcloud_secret_id/_key" in checks["cloud"]
    assert "not-the-key-of-this-account" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("condition", "code", "fix"), [
    ("in_arrears", "ResourceUnavailable.InArrears", "top up the Tencent Cloud account"),
    ("not_activated", "ResourceUnavailable.NotExist", "activate Face Recognition (IAI)"),
    ("frozen", "ResourceUnavailable.Freeze", "the account is frozen or suspended: ask Tencent Cloud support"),
    ("key_disabled", "AuthFailure.SecretIdNotFound", "check tencentcloud_secret_id/_key"),
])
def test_doctor_says_what_to_do_about_the_account(broker: Broker, emulator: Any, tmp_path: Path, condition: str, code: str, fix: str) -> None:
    control(emulator, account=condition)
    proc = doctor(installed(tmp_path, broker.url, emulator), "--skip", "camera")
    assert proc.returncode == 1
    checks = lines_of(proc.stdout)
    assert checks["cloud"].split()[0] == "FAIL" and code in checks["cloud"], checks["cloud"]
    assert f"fix: {fix}" in checks["cloud"] and "network" not in checks["cloud"], checks["cloud"]


@pytest.mark.parametrize(("skew_s", "status", "words"), [(-3600, "fail", "s behind"), (20, "warn", "s ahead of"), (0, "ok", "within")])
def test_doctor_measures_the_device_clock_against_the_clouds_date_header(
    broker: Broker, emulator: Any, tmp_path: Path, skew_s: float, status: str, words: str,
) -> None:
    """The device clock is skewed by a clock passed in; the emulator's Date header is the real time."""
    config_file = installed(tmp_path, broker.url, emulator)
    config = load_config(config_file, {"CREDENTIALS_DIRECTORY": str(config_file.parent / "credentials")})
    args = argparse.Namespace(skip=["camera", "model", "broker", "disk"], credentials=Credentials(config_file.parent / "credentials", "test"))
    checks = {c.name: c for c in run_checks(config, args, clock=lambda: time.time() + skew_s)}
    assert checks["cloud"].status == "ok"  # an hour off: signed with the cloud's time after its SignatureExpire, and warned
    assert checks["clock"].status == status and words in checks["clock"].detail, checks["clock"]
    if status != "ok":
        measured = int(re.search(r"is (\d+) s", checks["clock"].detail).group(1))  # type: ignore[union-attr]
        assert abs(measured - abs(skew_s)) <= 1  # the Date header has whole seconds
        assert "timedatectl set-ntp true" in checks["clock"].fix


def test_doctor_exits_78_on_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("mqtt:\n  keepalive_s: soon\n")
    proc = doctor(bad)
    assert proc.returncode == 78 and "mqtt.keepalive_s: expected an integer" in proc.stderr
    as_json = doctor(bad, "--json")
    assert as_json.returncode == 78
    report = json.loads(as_json.stdout)  # --json stays one object, the problems in its failed `config` check
    assert report["checks"][0]["check"] == "config" and report["checks"][0]["status"] == "fail"
    assert "mqtt.keepalive_s: expected an integer" in report["checks"][0]["detail"]


def test_doctor_checks_the_liveness_action_is_allowed_only_when_liveness_is_on(broker: Broker, emulator: Any, tmp_path: Path) -> None:
    from tests.test_cloud import readme_cam_policy, readme_liveness_actions

    base, liveness = readme_cam_policy(), readme_liveness_actions()
    control(emulator, allowed_actions=base)  # the README's policy without the liveness addition
    off = doctor(installed(tmp_path / "off", broker.url, emulator), "--skip", "camera")
    assert off.returncode == 0 and "liveness" not in lines_of(off.stdout), off.stdout  # liveness off: not needed, not asked
    config_file = installed(tmp_path / "on", broker.url, emulator, liveness={"mode": "cloud"})
    refused = doctor(config_file, "--skip", "camera")
    checks = lines_of(refused.stdout)
    assert refused.returncode == 1 and checks["liveness"].split()[0] == "FAIL", refused.stdout
    assert "AuthFailure.UnauthorizedOperation" in checks["liveness"] and 'add "iai:DetectLiveFaceAccurate"' in checks["liveness"]
    control(emulator, allowed_actions=base + liveness, reset_stats=True)
    allowed = doctor(config_file, "--skip", "camera")
    assert allowed.returncode == 0 and lines_of(allowed.stdout)["liveness"].split()[0] == "ok", allowed.stdout
    assert "error.DetectLiveFaceAccurate.InvalidParameterValue.ImageEmpty" in json.dumps(requests_stats(emulator))  # asked without an image
    assert "ok.DetectLiveFaceAccurate" not in requests_stats(emulator)  # nothing was scored


def requests_stats(emulator: Any) -> dict[str, int]:
    from tests.iai_helpers import stats

    return stats(emulator)
