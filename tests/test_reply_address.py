"""The reply address in the command itself (`reply_to`, `correlation`): honoured on MQTT 3.1.1, checked, and signed.

And a broker that refuses the device: named, with its fix, in systemd's status line and once in the log.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.agent_proc import COMMAND_KEY, AgentProcess, signed, wait_until
from tests.broker import Broker
from tests.mqtt_helpers import Listener

V311 = {"mqtt": {"protocol": "3.1.1"}}


def listener311(broker: Broker, topics: list[str]) -> Listener:
    return Listener(broker.host, broker.port, topics, protocol=mqtt.MQTTv311)


def test_reply_to_and_correlation_in_the_payload_are_honoured_on_mqtt_3_1_1(broker: Broker, make_agent: Any, emulator: Any,
                                                                               person: str) -> None:
    agent: AgentProcess = make_agent(broker, device_id="cam-reply", **V311)
    listener = listener311(broker, ["integration/door-7/answers", f"{agent.base}/enroll/result"])
    try:
        listener.publish(f"{agent.base}/enroll", json.dumps({"id": "r-1", "person_id": person, "reply_to": "integration/door-7/answers",
                                                             "correlation": "ticket 4711"}))
        progress = listener.get_json("integration/door-7/answers", 30)
        assert progress["id"] == "r-1" and progress["state"] == "queued"
        reply = listener.get_json("integration/door-7/answers", 30, where=lambda r: "status" in r)
        assert (reply["id"], reply["status"], reply["correlation"]) == ("r-1", "succeeded", "ticket 4711")
        own = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r.get("id") == "r-1")
        assert "correlation" not in own  # the device's own topic is for everyone: the correlation is the sender's
        listener.publish(f"{agent.base}/enroll", json.dumps({"id": "r-1", "person_id": person, "reply_to": "integration/door-7/answers",
                                                             "correlation": "ticket 4712"}))
        replay = listener.get_json("integration/door-7/answers", 30, where=lambda r: r.get("replayed") is True)
        assert replay["correlation"] == "ticket 4712"  # the replay answers the new request's correlation
    finally:
        listener.close()


def test_a_reply_to_inside_the_fleet_or_a_bad_correlation_is_refused_naming_the_field(broker: Broker, make_agent: Any) -> None:
    agent: AgentProcess = make_agent(broker, device_id="cam-reply-bad", **V311)
    listener = listener311(broker, [f"{agent.base}/enroll/result", "faceagent/cam-other/#"])
    try:
        listener.publish(f"{agent.base}/enroll", json.dumps({"id": "r-2", "person_id": "1001", "reply_to": "faceagent/cam-other/enroll"}))
        refused = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r.get("id") == "r-2")
        assert refused["status"] == "rejected" and refused["error"]["message"].startswith("reply_to: response topic 'faceagent/cam-other/enroll'")
        listener.publish(f"{agent.base}/enroll", json.dumps({"id": "r-3", "person_id": "1001", "correlation": "line\nbreak"}))
        refused = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r.get("id") == "r-3")
        assert refused["error"]["message"] == "correlation: must be 1-128 printable ASCII characters"
    finally:
        listener.close()


def test_a_reply_to_changed_after_signing_is_refused(broker: Broker, make_agent: Any) -> None:
    agent: AgentProcess = make_agent(broker, device_id="cam-test", env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY},
                                     commands={"require_signature": True}, **V311)
    listener = listener311(broker, [f"{agent.base}/enroll/result", "attacker/#"])
    try:
        body = json.loads(signed("r-4", "1001", reply_to="operator/replies"))
        body["reply_to"] = "attacker/inbox"
        listener.publish(f"{agent.base}/enroll", json.dumps(body))
        refused = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r.get("payload_sha256") is not None)
        assert "sig: the signature does not match the command" in refused["error"]["message"]
        assert listener.messages.empty() or all(not m[0].startswith("attacker/") for m in list(listener.messages.queue))
    finally:
        listener.close()


def test_a_broker_that_refuses_the_device_is_named_in_the_ready_status_and_logged_once(tmp_path: Path, make_agent: Any) -> None:
    broker = Broker(tmp_path / "mosquitto", extra_conf="log_type all\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true\n", "allow_anonymous false\n"))
    broker.start()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    try:
        agent: AgentProcess = make_agent(broker, start=False, process=True)  # systemd's notify socket: a process
        agent.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
        agent.start(wait_online=False)
        messages: list[bytes] = []
        while not any(b"READY=1" in m for m in messages):
            messages.append(notify.recv(4096))
        ready = next(m for m in messages if b"READY=1" in m).decode()
        assert "broker refused: Not authorized; check mqtt.username and the mqtt_password credential" in ready
        wait_until(lambda: broker.log.read_text().count("not authorised") >= 3, 30, "three refused attempts")
        warnings = [line for line in agent.log().splitlines() if "WARNING" in line and "MQTT broker" in line]
        assert agent.alive and len(warnings) == 1, agent.log()  # told once, not every attempt
        assert "not authorised" in warnings[0] and "check mqtt.username" in warnings[0]
    finally:
        notify.close()
        broker.stop()
