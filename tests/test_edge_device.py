"""The device's own resources under pressure: a snapshot flood must not hold up an enrollment.

Figures go to docs/reliability.md; run with `-s` to see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any

from tests.agent_proc import COMMAND_KEY, command, listen, result_for, signed
from tests.broker import Broker
from tests.iai_helpers import control
from tests.mqtt_helpers import Listener

FLOOD_PER_S = 100
FLOOD_CAP_S = 60.0  # the flood stops by itself here; an enrollment that waits for it to end has failed the test


def flood_snapshots(broker: Broker, base: str, stop: threading.Event) -> int:
    """Unsigned snapshot requests at FLOOD_PER_S until `stop` (or the cap); how many were sent."""
    flooder = Listener(broker.host, broker.port, [f"{base}/flood-nobody"])
    sent, started = 0, time.monotonic()
    try:
        while not stop.is_set() and time.monotonic() - started < FLOOD_CAP_S:
            flooder.client.publish(f"{base}/snapshot", json.dumps({"id": f"flood-{sent}"}), qos=1)
            sent += 1
            stop.wait(max(0.0, started + sent / FLOOD_PER_S - time.monotonic()))
    finally:
        flooder.close()
    return sent


def test_a_snapshot_flood_does_not_hold_up_an_enrollment(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    stop, counts = threading.Event(), []
    flood = threading.Thread(target=lambda: counts.append(flood_snapshots(broker, agent.base, stop)), daemon=True)
    try:
        flood.start()
        for _ in range(20):  # the flood is in full swing: the snapshot queue refills as fast as it is served
            listener.get_json(f"{agent.base}/snapshot/result", 10)
        sent_at = time.monotonic()
        listener.publish(f"{agent.base}/enroll", command("during-flood", person))
        served = 0  # snapshots the device served between the command and its result
        while True:
            topic, payload, _, _ = listener.get(timeout=FLOOD_CAP_S + 30)
            if topic.endswith("/snapshot/result") and b"jpeg_b64" in payload:
                served += 1
            elif topic.endswith("/enroll/result") and json.loads(payload)["id"] == "during-flood":
                result = json.loads(payload)
                break
        waited = time.monotonic() - sent_at
        stop.set()
        flood.join(10)
        print(f"\nenrollment during a {FLOOD_PER_S}/s snapshot flood: {result['status']} after {waited:.2f} s, "
              f"{served} snapshot(s) served meanwhile ({counts[0] if counts else '?'} requests sent)")
        assert result["status"] == "succeeded"
        # the job is taken at the worker's next turn: a snapshot taken just before, a few served as it finishes
        assert served <= 5, f"{served} snapshots were served before the enrollment ({waited:.1f} s)"
        assert agent.alive
    finally:
        stop.set()
        listener.close()


def test_a_captured_signed_snapshot_request_is_refused_after_a_restart(broker: Broker, make_agent: Any) -> None:
    agent = make_agent(broker, env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY}, commands={"require_signature": True})
    listener = listen(broker, agent.base)
    try:
        request = signed("aim", None)
        listener.publish(f"{agent.base}/snapshot", request)
        assert listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")["jpeg_b64"]
        assert agent.stop() == 0
        agent.start(broker)  # the replay memory must not be in RAM only
        listener.publish(f"{agent.base}/snapshot", request)  # captured and sent again, its ts still valid
        replayed = listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")
        assert "jpeg_b64" not in replayed and "already answered" in replayed["error"]["message"]
        listener.publish(f"{agent.base}/snapshot", signed("aim", None, ts=json.loads(request)["ts"] - 1))  # a new request
        assert listener.get_json(f"{agent.base}/snapshot/result", where=lambda r: r.get("id") == "aim")["jpeg_b64"]
    finally:
        listener.close()


def test_one_refused_session_token_does_not_refuse_the_next_enrollment(broker: Broker, make_agent: Any, emulator: Any,
                                                                       person: str) -> None:
    """Temporary credentials rotate: a TokenFailure that the job could not get past is not a verdict on the account."""
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base)
    try:
        control(emulator, fail_next={"code": "AuthFailure.TokenFailure", "count": 2, "action": "GetPersonBaseInfo"})
        listener.publish(f"{agent.base}/enroll", command("token-1", person))
        first = result_for(listener, agent.base, "token-1")
        assert first["status"] == "failed" and first["error"]["code"] == "cloud_auth", first
        listener.publish(f"{agent.base}/enroll", command("token-2", person))  # the cloud accepts the token again
        second = result_for(listener, agent.base, "token-2")
        assert second["status"] == "succeeded", second
    finally:
        listener.close()


def test_file_descriptors_exhausted_is_storage_unavailable_and_the_device_recovers(broker: Broker, make_agent: Any,
                                                                                   person: str) -> None:
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base)
    pid = agent.proc.pid
    try:
        soft = subprocess.run(["prlimit", f"--pid={pid}", "--nofile", "--raw", "--noheadings", "--output=SOFT"], check=True,
                              capture_output=True, text=True).stdout.strip()
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={in_use}:"], check=True)  # not one more file
        listener.publish(f"{agent.base}/enroll", command("fd-1", person))
        refused = result_for(listener, agent.base, "fd-1")
        assert (refused["error"]["code"], refused["error"]["retryable"]) == ("storage_unavailable", True), refused
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)
        listener.publish(f"{agent.base}/enroll", command("fd-2", person))
        assert result_for(listener, agent.base, "fd-2")["status"] == "succeeded"
    finally:
        listener.close()
