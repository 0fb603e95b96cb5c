"""The systemd unit (verify, security exposure) and the install/uninstall scripts (into a temporary root)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, building_this_checkout

UNIT = REPO / "systemd" / "faceagent.service"
EXPOSURE_TARGET = 2.0
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_systemd
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    entry = Path(sys.executable).parent / "faceagent"
    assert entry.exists()
    unit = tmp_path / "faceagent.service"
    unit.write_text(UNIT.read_text().replace("/opt/faceagent/bin/faceagent", str(entry)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if "faceagent.service" in line]
    assert not problems, problems


@needs_systemd
def test_unit_security_exposure_is_within_target() -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for faceagent\.service: ([0-9.]+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= EXPOSURE_TARGET


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78", "User=faceagent",
                    "SupplementaryGroups=video", "StateDirectory=faceagent", "ConfigurationDirectory=faceagent",
                    "CacheDirectory=faceagent", "UMask=0077", "LoadCredential=tencentcloud_secret_id:",
                    "LoadCredential=tencentcloud_secret_key:", "LoadCredential=tencentcloud_session_token:",
                    "LoadCredential=mqtt_password:", "LoadCredential=command_hmac_key:"):
        assert setting in text, setting


def run_script(name: str, root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    with building_this_checkout() if name == "install.sh" else contextlib.nullcontext():
        return subprocess.run(["bash", str(REPO / "systemd" / name), "--root", str(root), *args], capture_output=True,
                              text=True, timeout=600, check=False, env={**os.environ, **(env or {})})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_into_a_temporary_root_is_idempotent_and_uninstall_keeps_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run_script("install.sh", root, "--pip-args", "--no-deps", env={"TENCENTCLOUD_SECRET_ID": "AKIDinstalled"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote" in first.stdout and "installed faceagent" in first.stdout
    assert (root / "opt/faceagent/bin/faceagent").exists()
    assert (root / "etc/systemd/system/faceagent.service").read_text() == UNIT.read_text()
    assert (root / "etc/sysusers.d/faceagent.conf").exists()
    config = root / "etc/faceagent/agent.yaml"
    assert "device_id: cam-01 " not in config.read_text()  # the hostname was filled in
    creds = root / "etc/faceagent/credentials"
    assert mode(creds) == 0o700
    assert {p.name: mode(p) for p in creds.iterdir()} == {
        "tencentcloud_secret_id": 0o600, "tencentcloud_secret_key": 0o600, "tencentcloud_session_token": 0o600,
        "mqtt_password": 0o600, "command_hmac_key": 0o600}
    loaded = set(re.findall(r"^LoadCredential=\w+:/etc/faceagent/credentials/(\w+)$", UNIT.read_text(), re.M))
    assert loaded == {p.name for p in creds.iterdir()}  # systemd refuses to start a unit whose credential file is missing
    assert (creds / "tencentcloud_secret_id").read_text() == "AKIDinstalled"
    # the operator edits the config; an upgrade keeps it
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    second = run_script("install.sh", root, "--pip-args", "--no-deps")
    assert second.returncode == 0, second.stderr
    assert "kept existing" in second.stdout and config.read_text().endswith("# edited by the operator\n")
    assert (creds / "tencentcloud_secret_id").read_text() == "AKIDinstalled"
    # uninstall keeps configuration and credentials, --purge removes them
    removed = run_script("uninstall.sh", root)
    assert removed.returncode == 0 and not (root / "opt/faceagent").exists()
    assert not (root / "etc/systemd/system/faceagent.service").exists() and config.exists()
    purged = run_script("uninstall.sh", root, "--purge")
    assert purged.returncode == 0 and not (root / "etc/faceagent").exists()


def test_install_refuses_to_run_unprivileged_on_the_real_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root")
    proc = subprocess.run(["bash", str(REPO / "systemd/install.sh")], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "run as root" in proc.stderr


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh"])
def test_scripts_answer_help_with_a_usage_text_not_their_source(script: str) -> None:
    proc = subprocess.run(["bash", str(REPO / "systemd" / script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: sudo systemd/{script}")
    assert "#" not in proc.stdout and "set -e" not in proc.stdout and "--root DIR" in proc.stdout
    wrong = subprocess.run(["bash", str(REPO / "systemd" / script), "--bogus"], capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "unknown option --bogus (see --help)" in wrong.stderr


def _cloned_card(tmp_path: Path, serial: str | None, machine_id: str | None) -> dict[str, str]:
    """The environment of install.sh on a card cloned from a fresh Raspberry Pi OS image: hostname `raspberrypi`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "hostname").write_text("#!/bin/sh\necho raspberrypi\n")
    (bin_dir / "hostname").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FACEAGENT_SERIAL_FILE": str(tmp_path / "no-serial"),
           "FACEAGENT_MACHINE_ID_FILE": str(tmp_path / "no-machine-id")}
    if serial is not None:
        (tmp_path / "serial").write_bytes(serial.encode() + b"\0")  # the device tree's string ends with a NUL
        env["FACEAGENT_SERIAL_FILE"] = str(tmp_path / "serial")
    if machine_id is not None:
        (tmp_path / "machine-id").write_text(machine_id + "\n")
        env["FACEAGENT_MACHINE_ID_FILE"] = str(tmp_path / "machine-id")
    return env


def test_install_refuses_the_image_hostname_when_nothing_tells_the_card_from_its_clones(tmp_path: Path) -> None:
    proc = run_script("install.sh", tmp_path / "root", env=_cloned_card(tmp_path, None, None))
    assert proc.returncode == 1 and "give one with --device-id NAME" in proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "root/etc/faceagent").exists()  # refused before anything was written


def test_install_takes_the_device_id_from_the_serial_and_a_staging_uninstall_touches_nothing_live(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = _cloned_card(tmp_path, "10000000a1b2c3d4", "0123456789abcdef0123456789abcdef")
    proc = run_script("install.sh", root, "--pip-args", "--no-deps", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "device_id: cam-a1b2c3d4 " in (root / "etc/faceagent/agent.yaml").read_text()  # the Pi's serial, not raspberrypi
    removed = run_script("uninstall.sh", root)
    assert removed.returncode == 0 and "no broker is contacted from a staging tree" in removed.stdout, removed.stderr


def test_the_unit_pulls_in_time_sync_as_well_as_ordering_after_it() -> None:
    text = UNIT.read_text()
    wants = re.search(r"^Wants=(.*)$", text, re.M)
    after = re.search(r"^After=(.*)$", text, re.M)
    assert wants and "time-sync.target" in wants[1].split() and after and "time-sync.target" in after[1].split()
