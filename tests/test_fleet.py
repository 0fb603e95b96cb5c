"""A fleet run by people who make mistakes: one device id on two daemons, two daemons on one state folder, a
retryable failure resent by id, and the broker's refusals named in the service log."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import config_from_mapping
from agent.service.mqtt import failure_cause
from agent.service.state_lock import CONFLICT_NOTE
from tests.agent_proc import AgentProcess, command, fence, listen, result_for, wait_until
from tests.broker import Broker, free_port, password_tls_broker
from tests.conftest import REPO, faces
from tests.iai_helpers import control

AgentFactory = Callable[..., AgentProcess]


def test_a_second_daemon_on_one_state_folder_exits_78_naming_the_folder_and_the_other_process(
    broker: Broker, make_agent: AgentFactory, emulator: Any, person: str, tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-state"
    first = make_agent(broker, "cam-lock-a", process=True, state_dir=str(shared))
    second = make_agent(broker, "cam-lock-b", process=True, wait=False, state_dir=str(shared))
    assert second.proc is not None and first.proc is not None
    assert second.proc.wait(timeout=60) == 78, second.log()
    said = second.log()
    assert f"{shared} is in use by another faceagent process (pid {first.proc.pid})" in said, said
    assert "recover" not in said.lower(), said  # it stopped before touching the store
    before = len(faces(emulator, person))
    listener = listen(broker, first.base)
    try:
        listener.publish(f"{first.base}/enroll", command("lock-1"))
        assert result_for(listener, first.base, "lock-1")["status"] == "succeeded"
    finally:
        listener.close()
    assert len(faces(emulator, person)) == before + 1  # the first one runs it, once
    assert first.alive


def test_the_lock_dies_with_its_process(broker: Broker, make_agent: AgentFactory, tmp_path: Path) -> None:
    shared = tmp_path / "shared-state"
    first = make_agent(broker, "cam-lock-c", process=True, state_dir=str(shared))
    first.kill()
    second = make_agent(broker, "cam-lock-d", process=True, state_dir=str(shared))  # comes online: kill -9 left no lock
    assert second.alive


def test_two_daemons_with_one_device_id_stop_fighting_and_the_loser_says_why(
    broker: Broker, make_agent: AgentFactory, tmp_path: Path,
) -> None:
    first = make_agent(broker, "cam-dup", process=True)
    clone = make_agent(broker, "cam-dup-clone", process=True, start=False)  # its own config file, log and state folder
    clone.config["device_id"], clone.base = "cam-dup", first.base
    clone.start()
    assert first.proc is not None and first.proc.wait(timeout=30) == 78, first.log()  # taken over: stops, not restarted
    said = first.log()
    assert "took this device's session" in said and "device_id" in said and "cloned SD card" in said, said
    note = Path(first.config["state_dir"]) / CONFLICT_NOTE
    assert "took this device's session" in note.read_text()
    listener = listen(broker, clone.base)
    try:
        listener.publish(f"{clone.base}/enroll", command("dup-1", person_id="nobody"))
        assert result_for(listener, clone.base, "dup-1")["error"]["code"] == "person_not_found"  # the clone serves
    finally:
        listener.close()
    # No storm: the first one took the session back once (mosquitto 2.0 says nothing of a takeover), saw the clone's
    # retained state, and stopped; the clone connected once more and says who took its session.
    assert said.count("MQTT connected to") == 2, said
    assert clone.alive and clone.log().count("MQTT connected to") == 2, clone.log()
    # the clone names the first one only when its reconnect saw the first one's retained state (a race it may not see)
    if "took this device's session" in clone.log():
        assert "it started before this one" in clone.log() and "so it stops and this one stays" in clone.log()

    from agent.cli.doctor_checks import check_identity

    check = check_identity(config_from_mapping(yaml.safe_load(first.config_path.read_text()), first.env))
    assert check.status == "fail" and "took this device's session" in check.detail and "device_id" in check.fix


def test_a_retryable_failure_runs_again_when_its_id_is_resent_and_a_success_is_replayed(
    broker: Broker, make_agent: AgentFactory, emulator: Any, person: str,
) -> None:
    agent = make_agent(broker, "cam-retry")
    listener = listen(broker, agent.base)
    before = len(faces(emulator, person))
    try:
        control(emulator, outage=True)
        listener.publish(f"{agent.base}/enroll", command("enroll-employee-1001"))
        failed = result_for(listener, agent.base, "enroll-employee-1001", timeout=60)
        assert (failed["status"], failed["error"]["code"], failed["error"]["retryable"]) == ("failed", "cloud_unavailable", True)
        control(emulator, outage=False)
        listener.publish(f"{agent.base}/enroll", command("enroll-employee-1001"))
        again = result_for(listener, agent.base, "enroll-employee-1001", timeout=60)
        assert again["status"] == "succeeded" and not again["replayed"], again
        assert len(faces(emulator, person)) == before + 1
        listener.publish(f"{agent.base}/enroll", command("enroll-employee-1001"))
        replay = result_for(listener, agent.base, "enroll-employee-1001")
        assert replay["status"] == "succeeded" and replay["replayed"] and replay["face_ids"] == again["face_ids"]
        assert len(faces(emulator, person)) == before + 1  # a success is never run twice
    finally:
        control(emulator, outage=False)
        listener.close()


def test_a_failure_that_is_not_retryable_is_replayed(broker: Broker, make_agent: AgentFactory) -> None:
    agent = make_agent(broker, "cam-noretry")
    listener = listen(broker, agent.base)
    try:
        for replayed in (False, True):
            listener.publish(f"{agent.base}/enroll", command("nr-1", person_id="nobody"))
            result = result_for(listener, agent.base, "nr-1")
            assert (result["error"]["code"], result["error"]["retryable"], result["replayed"]) == ("person_not_found", False, replayed)
    finally:
        listener.close()


# --- why the broker connection fails, in the service log --------------------------------------------------------


def _cause_logged(make_agent: AgentFactory, broker: Broker, url: str, expected: str, env: dict[str, str] | None = None,
                  **mqtt: Any) -> None:
    """The agent's log names `expected` once, though it keeps retrying (a second attempt is seen: `(still)`)."""
    agent = make_agent(broker, f"cam-cause-{free_port()}", wait=False, env=env, mqtt={"url": url, **mqtt})
    wait_until(lambda: "(still)" in agent.log(), timeout=30, what="a second connection attempt")
    warnings = [line for line in agent.log().splitlines() if "WARNING" in line and "MQTT broker" in line]
    assert len(warnings) == 1 and expected in warnings[0], agent.log()
    agent.stop()


def test_the_service_log_names_a_refused_connection_once(broker: Broker, make_agent: AgentFactory) -> None:
    _cause_logged(make_agent, broker, f"mqtt://127.0.0.1:{free_port()}", "connection refused: no broker listens there")


def test_the_service_log_names_tls_bad_credentials_and_not_authorised(
    make_agent: AgentFactory, tmp_path: Path,
) -> None:
    private, tls_port, pki, other = password_tls_broker(tmp_path, {"cam-site": "right-password"})
    private.start()
    try:
        tls_url = f"mqtts://127.0.0.1:{tls_port}"
        _cause_logged(make_agent, private, tls_url, "TLS: the broker's certificate is not trusted", tls={"ca_file": str(other["ca"])})
        _cause_logged(make_agent, private, tls_url, "not authorised as user cam-site: a wrong mqtt_password credential", tls={"ca_file": str(pki["ca"])}, username="cam-site",
                      env={"FACEAGENT_MQTT_PASSWORD": "wrong-password"})
        _cause_logged(make_agent, private, private.url, "not authorised: the broker does not accept anonymous clients")
    finally:
        private.stop()


def test_a_dns_failure_names_the_host() -> None:
    cause = failure_cause("mqtt://broker.example.invalid:1883", socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert cause.startswith("DNS: the host broker.example.invalid is not known")
    assert failure_cause("mqtts://h:8883", ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]")).startswith("TLS handshake failed")
    bad = ReasonCode(PacketTypes.CONNACK, identifier=134)
    assert failure_cause("mqtt://h", reason=bad, username="cam-site").startswith("bad credentials: the broker refused user cam-site")


# --- ctl knows the device's presence before it waits -------------------------------------------------------------


def _ctl(broker: Broker, verb: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "ctl", verb, "--broker", broker.url, *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={"PATH": "/usr/bin:/bin"}, cwd=REPO)


def test_ctl_refuses_a_device_never_seen_at_once_naming_the_broker(broker: Broker) -> None:
    started = time.monotonic()
    proc = _ctl(broker, "enroll", "--device", "cam-never", "--person-id", "1001", "--timeout", "60")
    assert time.monotonic() - started < 20  # not the 60 s timeout (an interpreter start included)
    assert proc.returncode == 1 and f"broker {broker.url} (from --broker)" in proc.stderr, proc.stderr
    assert f"device cam-never has never been seen on {broker.url}" in proc.stderr and "nothing was sent" in proc.stderr
    assert "\nsent " not in "\n" + proc.stderr  # ctl prints "sent ID to TOPIC" once it published


def test_ctl_refuses_an_offline_device_and_leaves_no_command_behind(broker: Broker, make_agent: AgentFactory) -> None:
    agent = make_agent(broker, "cam-gone")
    assert agent.stop() == 0
    proc = _ctl(broker, "enroll", "--device", "cam-gone", "--person-id", "1001", "--id", "while-away", "--timeout", "60")
    assert proc.returncode == 1, proc.stderr
    assert f"device cam-gone is offline on {broker.url} (its retained state: started " in proc.stderr
    assert "\nsent " not in "\n" + proc.stderr
    snap = _ctl(broker, "snapshot", "--device", "cam-gone", "--out", str(Path(agent.config["state_dir"]).parent / "x.jpg"))
    assert snap.returncode == 1 and "is offline" in snap.stderr
    agent.start(broker)  # its persistent session kept its subscriptions: anything sent would arrive now
    listener = listen(broker, agent.base)
    try:
        assert [r["id"] for r in fence(listener, agent.base, "fence-gone")] == []  # 'while-away' never reached it
    finally:
        listener.close()


def test_a_ctl_timeout_says_the_job_may_finish_and_the_same_id_fetches_its_result(
    broker: Broker, make_agent: AgentFactory, emulator: Any, person: str,
) -> None:
    agent = make_agent(broker, "cam-slow")
    before = len(faces(emulator, person))
    control(emulator, delay_next={"ms": 4000, "action": "CreateFace"})
    short = _ctl(broker, "enroll", "--device", agent.device_id, "--person-id", person, "--id", "slow-1", "--timeout", "1")
    assert short.returncode == 3, short.stderr
    assert "the device may still run it" in short.stderr and "send the same command again with --id slow-1" in short.stderr
    again = _ctl(broker, "enroll", "--device", agent.device_id, "--person-id", person, "--id", "slow-1", "--timeout", "60", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "succeeded"
    assert len(faces(emulator, person)) == before + 1  # fetched, not run twice


@pytest.mark.parametrize(("camera", "message", "fix"), [
    ({"type": "files", "path": "/srv/frames"}, "camera files: /srv/frames does not exist", "camera.type picamera2"),
    ({"type": "opencv", "device": "/dev/video63"}, "camera opencv /dev/video63: cannot be opened", "is the USB camera plugged in?"),
    ({"type": "opencv", "device": "/dev/null"}, "camera opencv /dev/null: cannot be opened", "not a capture node"),
    ({"type": "picamera2"}, "camera picamera2: no camera 0 attached (0 found)", "reseat the ribbon cable"),
    ({"type": "picamera2"}, "camera picamera2: camera 0 is busy (Device or resource busy)", "another process holds the camera"),
])
def test_doctor_gives_the_camera_fix_for_the_cause(camera: dict[str, Any], message: str, fix: str) -> None:
    from agent.cli.doctor_checks import camera_fix

    config = config_from_mapping({"camera": camera}, {})
    assert fix in camera_fix(config, message)


def test_an_empty_credential_file_does_not_hide_the_environment(tmp_path: Path) -> None:
    from agent.config import read_secrets

    (tmp_path / "tencentcloud_secret_key").write_text("")  # install.sh creates every credential file, empty
    (tmp_path / "tencentcloud_secret_id").write_text("AKIDfromfile\n")
    found, problems = read_secrets({"CREDENTIALS_DIRECTORY": str(tmp_path), "TENCENTCLOUD_SECRET_KEY": "from-the-environment",
                                    "TENCENTCLOUD_SECRET_ID": "AKIDfromenv"})
    assert problems == [] and found["secret_key"] == "from-the-environment" and found["secret_id"] == "AKIDfromfile"


def test_check_config_says_where_each_key_came_from_and_an_empty_file_does_not_hide_the_environment(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "faceagent"
    (etc / "credentials").mkdir(parents=True, mode=0o700)
    (etc / "agent.yaml").write_text((REPO / "config" / "agent.example.yaml").read_text())
    (etc / "credentials" / "tencentcloud_secret_id").write_text("AKIDfromthefile0000000000000000000")
    (etc / "credentials" / "tencentcloud_secret_key").write_text("")  # as install.sh leaves it
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(etc / "agent.yaml")], capture_output=True,
                          text=True, timeout=60, check=False, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_KEY": "key-from-the-environment-000000"})
    assert proc.returncode == 0, proc.stderr
    assert f"# secrets.secret_id: from the credential tencentcloud_secret_id in {etc / 'credentials'}" in proc.stdout
    assert "# secrets.secret_key: from the environment variable TENCENTCLOUD_SECRET_KEY" in proc.stdout
    assert "key-from-the-environment" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("result", "again"), [
    ({"status": "failed", "faces_added": 0, "error": {"code": "cloud_unavailable", "retryable": True}}, True),
    ({"status": "failed", "faces_added": 0, "error": {"code": "no_face", "retryable": True}}, True),
    ({"status": "failed", "faces_added": 0, "person_created": True, "error": {"code": "no_face", "retryable": True}}, False),
    ({"status": "partial", "faces_added": 1, "face_ids": ["f1"], "error": {"code": "cloud_unavailable", "retryable": True}}, False),
    ({"status": "unknown", "faces_added": 0, "error": {"code": "outcome_unknown", "retryable": False}}, False),
    ({"status": "failed", "faces_added": 0, "error": {"code": "person_not_found", "retryable": False}}, False),
    ({"status": "succeeded", "faces_added": 1, "face_ids": ["f1"]}, False),
    ({"status": "dry_run", "dry_run": True, "error": {"code": "no_face", "retryable": True}}, False),
])
def test_only_a_retryable_failure_that_applied_nothing_runs_again(tmp_path: Path, result: dict[str, Any], again: bool) -> None:
    from agent.service.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite3")
    try:
        store.store_final({"id": "c-1", "person_id": "1001"}, result, [])
        assert store.submit({"id": "c-1", "person_id": "1001"}, queue_size=10).outcome == ("queued" if again else "duplicate")
        assert store.submit({"id": "c-1", "person_id": "1001"}, queue_size=10).outcome == "duplicate"  # now queued: never twice
    finally:
        store.close()


def test_a_stopped_daemon_hands_its_state_folder_on(broker: Broker, make_agent: AgentFactory, tmp_path: Path) -> None:
    from agent.errors import ConfigError

    shared = str(tmp_path / "shared-state")
    first = make_agent(broker, "cam-hand-a", state_dir=shared)
    second = make_agent(broker, "cam-hand-b", start=False, state_dir=shared)
    with pytest.raises(ConfigError, match="is in use by another faceagent process"):
        second.start(broker)
    assert first.stop() == 0
    second.start(broker)  # comes online: the stop released the lock
    assert second.alive


def test_two_daemons_with_one_device_id_under_two_client_ids_do_not_both_run_commands(
    broker: Broker, make_agent: AgentFactory, emulator: Any, person: str,
) -> None:
    """Nothing is taken over when the client ids differ: the live state of the other instance is what tells them apart."""
    first = make_agent(broker, "cam-twin", process=True)
    second = make_agent(broker, "cam-twin-2", process=True, start=False)
    second.config["device_id"], second.base = "cam-twin", first.base
    second.config["mqtt"]["client_id"] = "faceagent-cam-twin-second"
    second.start()
    assert first.proc is not None and first.proc.wait(timeout=30) == 78, first.log()
    assert "publishes as this device under another client id" in first.log() and "device_id" in first.log()
    listener = listen(broker, first.base)
    before = len(faces(emulator, person))
    try:
        listener.publish(f"{first.base}/enroll", command("twin-1", person))
        assert result_for(listener, first.base, "twin-1")["status"] == "succeeded"
        assert [r for r in fence(listener, first.base, "twin-fence") if r.get("id") == "twin-1"] == []  # one result only
        assert len(faces(emulator, person)) == before + 1
    finally:
        listener.close()
    assert second.alive


def test_ctl_to_a_broker_that_cannot_be_reached_names_it_and_fails(tmp_path: Path) -> None:
    """Nothing was sent: exit 1 (failed), not 3 (the device may still be running it), the broker named first."""
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", url, "--device", "cam-x", "--person-id", "1001",
                           "--timeout", "5"], capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"broker {url} (from --broker)") and f"cannot reach the broker at {url}" in proc.stderr
