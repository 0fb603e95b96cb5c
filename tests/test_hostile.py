"""Whoever can publish to the broker: every attack and every operator mistake gets a clear answer, and the device keeps working.

All against the real daemon process, a private mosquitto and the emulator. docs/reliability.md lists the attacks.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.agent_proc import COMMAND_KEY, command, fence, listen, result_for, signed, wait_until
from tests.broker import Broker
from tests.conftest import REPO, faces
from tests.iai_helpers import control
from tests.mqtt_helpers import Listener

SIGNED = {"env": {"FACEAGENT_COMMAND_KEY": COMMAND_KEY}, "commands": {"require_signature": True}}


def response_props(topic: str, correlation: bytes = b"c") -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = topic
    props.CorrelationData = correlation
    return props


# --- one message must not silence a device ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_topic", ["attacker/#", "attacker/+/x", "$SYS/broker", "faceagent/cam-other/enroll",
                                       "homeassistant/sensor/x/config"])
def test_a_bad_response_topic_is_refused_and_the_device_keeps_answering(
    broker: Broker, make_agent: Any, emulator: Any, person: str, bad_topic: str,
) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", b"not even json", properties=response_props(bad_topic))
        garbage = listener.get_json(f"{agent.base}/enroll/result")
        assert garbage["status"] == "rejected" and "not JSON" in garbage["error"]["message"]
        listener.publish(f"{agent.base}/enroll", command("rt-1", person), properties=response_props(bad_topic))
        refused = result_for(listener, agent.base, "rt-1")
        assert refused["status"] == "rejected" and "response topic" in refused["error"]["message"]
        listener.publish(f"{agent.base}/enroll", command("rt-2", person))
        assert result_for(listener, agent.base, "rt-2")["status"] == "succeeded"
        assert len(faces(emulator, "1001")) == 2  # rt-1 never ran
        assert agent.stop() == 0
        assert "Traceback" not in agent.log()
    finally:
        listener.close()


# --- signatures ------------------------------------------------------------------------------------------------


def test_a_signed_command_works_only_on_the_device_it_names(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, **SIGNED)
    listener = listen(broker, agent.base)
    try:
        for payload, why in [
            (signed("d-1", person, device_id="cam-other"), "device_id: the command is signed for device cam-other"),
            (signed("d-2", person, device_id=None), "device_id: a signed command carries device_id, ts and sig together; missing: device_id"),
            (command("d-3", person), "signed commands are required"),
            (signed("d-4", person, key="someone-elses-key-0000"), "the signature does not match"),
            (signed("d-5", person, ts=int(time.time()) - 3600), "ts: the signature timestamp is more than 300 s"),
        ]:
            listener.publish(f"{agent.base}/enroll", payload)
            result = listener.get_json(f"{agent.base}/enroll/result")
            assert result["status"] == "rejected" and why in result["error"]["message"], result
        tampered = json.loads(signed("d-6", person))
        tampered["person_id"] = "9999"  # signed for 1001, sent for someone else
        listener.publish(f"{agent.base}/enroll", json.dumps(tampered))
        refused = listener.get_json(f"{agent.base}/enroll/result")
        assert refused["id"] is None and "does not match" in refused["error"]["message"] and "'d-6' not taken" in refused["error"]["message"]
        listener.publish(f"{agent.base}/enroll", signed("d-7", person))
        assert result_for(listener, agent.base, "d-7")["status"] == "succeeded"
        listener.publish(f"{agent.base}/enroll", signed("d-7", person))  # captured and sent again: the id store stops it
        assert result_for(listener, agent.base, "d-7")["replayed"] is True
    finally:
        listener.close()


def test_snapshots_need_a_signature_when_commands_do(broker: Broker, make_agent: Any) -> None:
    agent = make_agent(broker, **SIGNED)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/snapshot", b'{"id": "peek"}')
        refused = listener.get_json(f"{agent.base}/snapshot/result")
        assert "jpeg_b64" not in refused and "signed commands are required" in refused["error"]["message"]
        request = signed("aim", None)
        first_ts = json.loads(request)["ts"]
        listener.publish(f"{agent.base}/snapshot", request)
        granted = listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")
        assert granted["jpeg_b64"] and granted["verdict"] == "ok"
        listener.publish(f"{agent.base}/snapshot", request)  # the same signed request, captured and sent again
        replayed = listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")
        assert "jpeg_b64" not in replayed and "already answered" in replayed["error"]["message"]
        listener.publish(f"{agent.base}/snapshot", signed("aim", None, ts=first_ts - 1))  # a new request may reuse the id
        again = listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")
        assert again["jpeg_b64"]
    finally:
        listener.close()


def test_every_snapshot_request_is_answered_even_beyond_the_queue(broker: Broker, make_agent: Any) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        sent = [listener.client.publish(f"{agent.base}/snapshot", json.dumps({"id": f"s-{i}"}), qos=1)
                for i in range(40)]  # a burst far beyond the 4 requests that may wait, not paced by PUBACKs
        for info in sent:
            info.wait_for_publish(10)
        answers = [listener.get_json(f"{agent.base}/snapshot/result") for _ in range(40)]
        assert sorted(a["id"] for a in answers) == sorted(f"s-{i}" for i in range(40))
        served = [a for a in answers if "jpeg_b64" in a]
        refused = [a for a in answers if "jpeg_b64" not in a]
        assert served and refused, (len(served), len(refused))
        assert all(a["error"]["code"] == "queue_full" and "ask again later" in a["error"]["message"] for a in refused)
        assert agent.log().count("snapshot request refused") == 1  # one line for the burst, not one per request
    finally:
        listener.close()


def test_unsigned_traffic_can_neither_read_stored_results_nor_claim_ids(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, **SIGNED)
    listener = listen(broker, agent.base)
    # the spy also reads the device's results: what the device sent to its topic arrives before a later result
    spy = Listener(broker.host, broker.port, ["attacker/replies", f"{agent.base}/enroll/result"])
    try:
        listener.publish(f"{agent.base}/enroll", signed("op-1", person, preview=True))
        assert result_for(listener, agent.base, "op-1")["status"] == "succeeded"
        # a probe reusing the known id, with its own Response Topic: no replay, nothing on its topic
        listener.publish(f"{agent.base}/enroll", command("op-1", person), properties=response_props("attacker/replies"))
        probe = listener.get_json(f"{agent.base}/enroll/result")
        assert probe["status"] == "rejected" and not probe["replayed"] and probe["face_ids"] == [] and "preview_jpeg_b64" not in probe
        assert probe["id"] is None  # one result per real command id, whatever strangers send
        # squatting: the id the operator will use next, sent first unsigned
        listener.publish(f"{agent.base}/enroll", command("op-2", person))
        assert "'op-2' not taken" in listener.get_json(f"{agent.base}/enroll/result")["error"]["message"]
        listener.publish(f"{agent.base}/enroll", signed("op-2", person))
        assert result_for(listener, agent.base, "op-2")["status"] == "succeeded"
        spy.get_json(f"{agent.base}/enroll/result", where=lambda r: r.get("id") == "op-2" and r.get("status") == "succeeded")
        assert spy.received("attacker/replies") == []
    finally:
        listener.close()
        spy.close()


def test_the_face_match_threshold_floor_applies_when_a_command_omits_it(broker: Broker, make_agent: Any, person: str) -> None:
    """The emulator scores another photo of the same person 87-90 (docs/emulator.md): under a floor of 95 it is refused."""
    agent = make_agent(broker, commands={"min_face_match_threshold": 95})
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("floor-1", person))  # no face_match_threshold: the cloud's 60 would pass it
        result = result_for(listener, agent.base, "floor-1")
        assert (result["status"], result["error"]["code"]) == ("failed", "face_mismatch")
        listener.publish(f"{agent.base}/enroll", command("floor-2", person, face_match_threshold=60))
        assert "must be >= 95" in result_for(listener, agent.base, "floor-2")["error"]["message"]
    finally:
        listener.close()


# --- floods and sizes --------------------------------------------------------------------------------------------


def test_a_flood_of_commands_gets_exactly_one_result_each(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, enroll={"queue_size": 3})
    observer = Listener(broker.host, broker.port, [f"{agent.base}/enroll/result"])  # independent of the sender
    sender = Listener(broker.host, broker.port, ["flood/none"])
    try:
        ids = [f"flood-{n}" for n in range(1000)]
        started = time.monotonic()
        for n, command_id in enumerate(ids):
            # most are refused at once; every tenth is valid and fills the queue, then is answered queue_full
            payload = command(command_id, person) if n % 10 == 0 else command(command_id, person, faces=9)
            sender.client.publish(f"{agent.base}/enroll", payload, qos=1)
        counts: Counter[str] = Counter()
        deadline = time.monotonic() + 240
        while set(counts) != set(ids) and time.monotonic() < deadline:
            result = json.loads(observer.get(timeout=60)[1])
            assert not result["replayed"]
            counts[result["id"]] += 1
        print(f"\nflood: {len(ids)} commands, {sum(counts.values())} results in {time.monotonic() - started:.1f} s")
        later = fence(observer, agent.base, "flood-fence")
        assert [r["id"] for r in later if r["id"] in counts] == []  # and nothing more comes
        assert set(counts) == set(ids)
        assert [i for i, n in counts.items() if n != 1] == []
    finally:
        observer.close()
        sender.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_whatever_size_is_published(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("mem-0", person))
        assert result_for(listener, agent.base, "mem-0")["status"] == "succeeded"
        before = rss_mb(agent.proc.pid)
        huge = b"x" * (150 * 1024 * 1024)
        for _ in range(3):
            listener.publish(f"{agent.base}/enroll", huge)
        del huge
        big = json.dumps({"id": "mem-1", "person_id": person, "pad": "x" * 100_000}).encode()  # over 64 KiB, under the packet limit
        listener.publish(f"{agent.base}/enroll", big)
        assert "commands are at most 65536 bytes" in listener.get_json(f"{agent.base}/enroll/result")["error"]["message"]
        listener.publish(f"{agent.base}/enroll", command("mem-2", person))
        assert result_for(listener, agent.base, "mem-2")["status"] == "succeeded"
        after = rss_mb(agent.proc.pid)
        print(f"\ndaemon RSS {before:.1f} MB -> {after:.1f} MB after 3 x 150 MB publications")
        assert after - before < 30
    finally:
        listener.close()


# --- storage faults ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 3 MB tmpfs for the state directory (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)], check=False, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_full_disk_is_reported_without_a_busy_loop_and_every_job_gets_its_result(
    broker: Broker, make_agent: Any, emulator: Any, person: str, small_disk: Path,
) -> None:
    agent = make_agent(broker, state_dir=str(small_disk / "state"), process=True)
    listener = listen(broker, agent.base)
    try:
        control(emulator, delay_next={"ms": 2000, "count": 1, "action": "CreateFace"})
        listener.publish(f"{agent.base}/enroll", command("disk-1", person))  # will finish while the disk is full
        wait_until(lambda: emulator_stat(emulator, "ok.CreateFace") == 1, what="CreateFace applied")
        filler = fill(small_disk)
        listener.publish(f"{agent.base}/enroll", command("disk-2", person))
        refused = result_for(listener, agent.base, "disk-2")
        assert refused["status"] == "rejected" and refused["error"]["code"] == "storage_unavailable" and refused["error"]["retryable"]
        assert "full" in refused["error"]["message"]
        state = listener.get_json(f"{agent.base}/state", where=lambda s: s.get("storage_error"))
        assert "database or disk is full" in state["storage_error"] and "rollback" not in state["storage_error"]
        log_lines = len(agent.log().splitlines())
        cpu0 = cpu_seconds(agent.proc.pid)
        time.sleep(3)  # measuring what an idle-but-full device does over a few seconds
        cpu, lines = cpu_seconds(agent.proc.pid) - cpu0, len(agent.log().splitlines()) - log_lines
        print(f"\nfull disk: {cpu:.2f} s CPU and {lines} log lines in 3 s")
        assert cpu < 0.5  # no busy loop
        assert lines < 20  # no log flood
        filler.unlink()
        done = result_for(listener, agent.base, "disk-1", timeout=90)  # stored and sent once there is room
        assert done["status"] == "succeeded"
    finally:
        listener.close()


def emulator_stat(emulator: Any, key: str) -> int:
    from tests.iai_helpers import stats

    return stats(emulator).get(key, 0)


# --- smaller holes -----------------------------------------------------------------------------------------------


def test_malicious_fields_get_answers_and_cannot_forge_log_lines(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", b'{"id": "ts-1", "person_id": "1001", "ts": ' + b"9" * 400 + b"}")
        assert "a number has 400 digits" in result_for(listener, agent.base, "ts-1")["error"]["message"]
        forged = {"id": "log-1", "person_id": "1001", "x\nINFO agent: forged line\u001b[2J": 1}
        listener.publish(f"{agent.base}/enroll", json.dumps(forged))
        message = result_for(listener, agent.base, "log-1")["error"]["message"]
        assert "\n" not in message and "\u001b" not in message and "unknown field" in message
        listener.publish(f"{agent.base}/enroll", command("after-1", person))
        assert result_for(listener, agent.base, "after-1")["status"] == "succeeded"
        assert not any(line.startswith("INFO agent: forged") for line in agent.log().splitlines())
    finally:
        listener.close()


def test_a_live_retained_command_is_not_executed(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base)
    try:
        for i in range(20):  # a burst: ignored, and logged once
            listener.publish(f"{agent.base}/enroll", command(f"ret-live-{i}", person), retain=True)
        listener.publish(f"{agent.base}/enroll", command("ret-after", person))  # commands are handled in order
        assert result_for(listener, agent.base, "ret-after")["status"] == "succeeded"
        assert len(faces(emulator, "1001")) == 2  # only ret-after's face
        telemetry = listener.get_json(f"{agent.base}/telemetry", where=lambda t: t["counters"]["ignored_retained"] >= 20)
        assert telemetry["counters"]["ignored_retained"] == 20
        assert agent.log().count("ignoring a retained message") == 1
    finally:
        listener.publish(f"{agent.base}/enroll", b"", retain=True)
        listener.close()


def test_preview_crops_are_published_but_never_kept_on_the_device(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("pv-1", person, preview=True))
        result = result_for(listener, agent.base, "pv-1")
        assert result["preview_jpeg_b64"][0][:4] == "/9j/"
        listener.publish(f"{agent.base}/enroll", command("pv-1", person, preview=True))
        assert "preview_jpeg_b64" not in result_for(listener, agent.base, "pv-1")  # the replay comes from what is stored
        db = sqlite3.connect(Path(agent.config["state_dir"]) / "jobs.sqlite3")
        stored = " ".join(str(row) for row in db.execute("SELECT command, result, upload FROM jobs"))
        assert "preview_jpeg_b64" not in stored and "/9j/" not in stored
    finally:
        listener.close()


def test_a_damaged_store_is_replaced_at_start_and_the_device_answers(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        for n in range(30):
            listener.publish(f"{agent.base}/enroll", command(f"fill-{n}", person, faces=9))
            result_for(listener, agent.base, f"fill-{n}")
        assert agent.stop() == 0
        path = Path(agent.config["state_dir"]) / "jobs.sqlite3"
        data = bytearray(path.read_bytes())
        data[4096 : 4096 + 300] = b"\xa5" * 300
        path.write_bytes(bytes(data))
        agent.start(broker)
        state = listener.get_json(f"{agent.base}/state", where=lambda s: s.get("store_recovered_from"))
        assert ".corrupt-" in state["store_recovered_from"]
        listener.publish(f"{agent.base}/enroll", command("fresh-1", person))
        assert result_for(listener, agent.base, "fresh-1")["status"] == "succeeded"
    finally:
        listener.close()


BAD_CONFIGS = [
    ({"commands": {"require_signature": True}}, {}, "commands.require_signature"),
    ({}, {"FACEAGENT_COMMAND_KEY": "k"}, "at least 16 characters"),
    ({"cloud": {"endpoint": "http://iai.example.com"}}, {}, "http:// only to a loopback emulator"),
    ({"cloud": {"endpoint": "https://iai.tencentcloudapi.com/x?y"}}, {}, "cloud.endpoint"),
    ({"mqtt": {"url": "mqtt://127.0.0.1:99999"}}, {}, "invalid port"),
    ({"mqtt": {"url": "mqtts://127.0.0.1:8883", "tls": {"ca_file": "/nonexistent/ca.pem"}}}, {}, "mqtt.tls.ca_file"),
    ({"cloud": {"version": "2020-03-03", "region": ""}}, {}, "cloud.region"),
    ({"state_dir": "/etc/hostname/state"}, {}, "state_dir: /etc/hostname/state: /etc/hostname is not a directory"),
    ({"detector": {"model_path": "/etc/hostname"}}, {}, "detector.model_path"),
    ({"mqtt": {"url": "mqtts://127.0.0.1:8883", "tls": {"ca_file": "/etc/hostname"}}}, {}, "mqtt.tls.ca_file: /etc/hostname holds no usable"),
    ({"mqtt": {"tls": {"ca_file": "/etc/ssl/certs/ca-certificates.crt"}}}, {}, "mqtt.tls: certificates are set but mqtt.url is mqtt://"),
    ({"camera": {"type": "opencv", "device": -1}}, {}, "camera.device: -1 is not a camera index"),
    ({"mqtt": {"topic_prefix": "$SYS"}}, {}, "mqtt.topic_prefix: $-topics belong to the broker"),
    ({"mqtt": {"client_id": ""}}, {}, "mqtt.client_id"),
    ({"quality": {"min_brightness": 220}}, {}, "quality.min_brightness: must be <= max_brightness"),
    ({"cloud": {"backoff_base_s": 10}}, {}, "cloud.backoff_base_s: must be <= backoff_max_s"),
    ({"cloud": {"deadline_s": 5}}, {}, "cloud.deadline_s: must be >= read_timeout_s"),
    ({}, {"TENCENTCLOUD_SESSION_TOKEN": "token-with\ninner-part"}, "holds a control character"),
]


@pytest.mark.parametrize(("overrides", "env", "message"), BAD_CONFIGS, ids=[m for _, _, m in BAD_CONFIGS])
def test_every_configuration_problem_run_would_hit_is_caught_by_check_config(
    tmp_path: Path, overrides: dict[str, Any], env: dict[str, str], message: str,
) -> None:
    import yaml

    cfg = tmp_path / "agent.yaml"
    base = {"state_dir": str(tmp_path / "state"), "camera": {"type": "files", "path": str(tmp_path)}}
    cfg.write_text(yaml.safe_dump({**base, **overrides, "camera": {**base["camera"], **overrides.get("camera", {})}}))
    base_env = {"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "key", **env}
    for verb in ("check-config", "run"):
        proc = subprocess.run([sys.executable, "-m", "agent", verb, "--config", str(cfg)], capture_output=True, text=True,
                              timeout=60, check=False, env=base_env, cwd=REPO)
        assert proc.returncode == 78, (verb, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (verb, proc.stderr)
        for value in (v for v in env.values() if len(v) > 4):  # a refused credential is named, never shown
            assert value not in proc.stderr and repr(value)[1:-1] not in proc.stderr


def test_a_repeated_yaml_key_and_a_lower_case_log_level_are_handled(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"camera:\n  type: files\n  path: {tmp_path}\ncamera:\n  type: files\n")
    env = {"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "key"}
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=60, check=False, env=env, cwd=REPO)
    assert proc.returncode == 78 and "key 'camera' is given twice" in proc.stderr
    cfg.write_text(f"state_dir: {tmp_path}/state\ncamera:\n  type: files\n  path: {tmp_path}\n")
    for level in ("debug", "warn", "LOUD"):
        proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(cfg)], capture_output=True, text=True,
                              timeout=60, check=False, env={**env, "FACEAGENT_LOG_LEVEL": level}, cwd=REPO)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (level, proc.stderr)
    assert "'LOUD' is not one of DEBUG" in proc.stderr


# --- operators hurting themselves ---------------------------------------------------------------------------------


def ctl(broker_url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "--log-level", "DEBUG", "ctl", "enroll", "--broker", broker_url, *args],
                          capture_output=True, text=True, timeout=timeout + 30, check=False,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, cwd=REPO)


def test_ctl_takes_only_its_own_answer_while_strangers_are_refused(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker, **SIGNED)
    listener = listen(broker, agent.base)
    control(emulator, delay_next={"ms": 3000, "action": "CreateFace"})  # the operator's enrollment is still running when...
    key = {"FACEAGENT_COMMAND_KEY": COMMAND_KEY}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", broker.url, "--device", "cam-test",
                                 "--person-id", person, "--id", "op-busy", "--json", "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", **key}, cwd=REPO)
        listener.get_json(f"{agent.base}/enroll/progress", 30, where=lambda p: (p["id"], p["state"]) == ("op-busy", "uploading"))
        listener.publish(f"{agent.base}/enroll", b"x")  # ...a stranger's message is refused on the same topic, without an id
        stranger = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r["id"] is None)
        assert "not JSON" in stranger["error"]["message"] and stranger["payload_sha256"]
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert (json.loads(out)["id"], json.loads(out)["status"]) == ("op-busy", "succeeded")
        # the device's refusal of ctl's own command (a wrong key) is recognised by the digest of what ctl sent
        wrong = ctl(broker.url, "--device", "cam-test", "--person-id", person, "--timeout", "20",
                    env={"FACEAGENT_COMMAND_KEY": "not-the-operators-key-0123"})
        assert wrong.returncode == 1 and "rejected: nothing was run" in wrong.stdout and "signature does not match" in wrong.stdout
    finally:
        listener.close()


def test_ctl_commands_expire_so_a_device_that_comes_back_does_not_enroll_late(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base, client_id="expiry-watch", persistent=True)
    try:
        assert agent.stop() == 0  # the device is down; its session keeps its subscriptions
        latest_expiry = int(time.time() + 2) + 1  # ctl sets expires_at to the end of its --timeout, rounded up
        sent = ctl(broker.url, "--device", agent.device_id, "--person-id", person, "--id", "late-1", "--timeout", "2", "--queue")
        assert sent.returncode == 3
        wait_until(lambda: time.time() > latest_expiry + 1, what="the command's expiry to pass")  # the operator has given up
        agent.start(broker)
        late = result_for(listener, agent.base, "late-1")
        assert late["status"] == "expired" and len(faces(emulator, "1001")) == 1
    finally:
        listener.close()


@pytest.mark.parametrize(("url", "message"), [("127.0.0.1:51089", "has no scheme"), ("mqtt://127.0.0.1:99999", "invalid port"),
                                              ("tcp://127.0.0.1:1883", "is not mqtt://")])
def test_ctl_parses_broker_addresses_strictly(url: str, message: str) -> None:
    proc = ctl(url, "--device", "x", "--person-id", "1001", "--timeout", "1")
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--device", "cam-+", "'cam-+': a device id"), ("--device", "#", "'#': a device id"), ("--device", "a/b", "'a/b': a device id"),
    ("--id", "two words", "'two words': a command id"), ("--id", "x" * 65, "a command id is 1-64"),
    ("--person-id", "bad id", "'bad id': a person id"), ("--faces", "9", "invalid choice: 9"),
    ("--timeout", "inf", "'inf': must be from 1 to 86400"), ("--timeout", "nan", "'nan': must be"), ("--timeout", "0", "'0': must be"),
])
def test_ctl_refuses_arguments_the_device_would_not_answer_before_connecting(option: str, value: str, message: str) -> None:
    given = {"--device": "cam-1", "--id": "op-1", "--person-id": "1001", "--timeout": "1", option: value}
    proc = ctl("mqtt://127.0.0.1:1", *[part for pair in given.items() for part in pair])
    assert proc.returncode == 2 and f"argument {option}: " in proc.stderr and message in proc.stderr and "sent " not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctl_uses_credentials_in_the_url_and_never_shows_them(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "operator", "s3cret-pass-word"], check=True, capture_output=True)
    passwords.chmod(0o600)
    private = Broker(tmp_path / "auth-broker", extra_conf=f"password_file {passwords}\n")
    private.conf.write_text(private.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    private.start()
    try:
        url = f"mqtt://operator:s3cret-pass-word@127.0.0.1:{private.port}"
        proc = ctl(url, "--device", "nobody", "--person-id", "1001", "--timeout", "1", "--queue")
        assert proc.returncode == 3 and "sent " in proc.stderr  # authenticated, subscribed, published
        assert "s3cret-pass-word" not in proc.stdout + proc.stderr
        refused = ctl(f"mqtt://operator:wrong@127.0.0.1:{private.port}", "--device", "nobody", "--person-id", "1001", "--timeout", "1")
        assert refused.returncode != 0 and "sent " not in refused.stderr
    finally:
        private.stop()


def readme_acl() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("# /etc/mosquitto/acl")
    return readme[start:readme.index("```", start)]


def test_the_readme_acl_lets_device_and_operator_work_and_keeps_devices_apart(
    tmp_path: Path, make_agent: Any, person: str,
) -> None:
    passwords = tmp_path / "passwords"
    users = {"cam-acl": "device-pass-1", "cam-other": "device-pass-2", "operator": "operator-pass"}
    for i, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password], check=True, capture_output=True)
    passwords.chmod(0o600)
    (tmp_path / "acl").write_text(readme_acl())
    (tmp_path / "acl").chmod(0o600)
    broker = Broker(tmp_path / "acl-broker", extra_conf=f"password_file {passwords}\nacl_file {tmp_path / 'acl'}\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    operator = Listener(broker.host, broker.port, ["faceagent/#"], username="operator", password=users["operator"])
    replies = Listener(broker.host, broker.port, ["faceagent-ctl/#"], username="operator", password=users["operator"])
    other = Listener(broker.host, broker.port, ["faceagent/cam-acl/#"], username="cam-other", password=users["cam-other"])
    try:
        agent = make_agent(broker, device_id="cam-acl", wait=False, mqtt={"username": "cam-acl"},
                           env={"FACEAGENT_MQTT_PASSWORD": users["cam-acl"]})
        assert operator.get("faceagent/cam-acl/availability", timeout=30)[1] == b"online"
        # another device may neither command this one nor read its commands
        other.publish("faceagent/cam-acl/enroll", command("forged", person))
        url = f"mqtt://operator:{users['operator']}@127.0.0.1:{broker.port}"
        proc = ctl(url, "--device", "cam-acl", "--person-id", person, "--id", "acl-1", "--json", "--timeout", "30")
        assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "succeeded", proc.stderr
        while (message := replies.get(timeout=10))[0].endswith("/probe") or "status" not in (reply := json.loads(message[1])):
            pass  # ctl's presence probe (to itself), progress, then the result
        assert message[0].endswith("/reply") and reply["id"] == "acl-1"  # the device may write ctl's Response Topic
        seen = operator.get_json("faceagent/cam-acl/enroll/result", timeout=10)
        assert seen["id"] == "acl-1"  # the forged command, published first, never reached the device
        with pytest.raises(TimeoutError):
            other.get(timeout=0.5)  # nor did the operator's command reach the other device's eyes
        assert "not authorized" not in agent.log().lower()
        assert agent.stop() == 0
    finally:
        for listener in (operator, replies, other):
            listener.close()
        broker.stop()


def test_a_planned_restart_loses_no_command(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base, client_id="restart-watch", persistent=True, protocol=mqtt.MQTTv5)
    try:
        assert agent.stop() == 0
        listener.publish(f"{agent.base}/enroll", command("while-down", person))  # sent during the restart
        agent.start(broker)
        assert result_for(listener, agent.base, "while-down")["status"] == "succeeded"
    finally:
        listener.close()
