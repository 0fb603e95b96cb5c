"""The fleet ACL of docs/brokers.md on a real mosquitto: one device's credentials cannot take another's client id.

Without a rule that binds the client id to the user, cam-02's credentials with client id `faceagent-cam-01` take
over cam-01's persistent session: its queued commands are delivered to the intruder (and vanish for cam-01), and
cam-01 is knocked off each time. `use_username_as_clientid true` makes the broker use the user name as the client
id, whatever the client asks for.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.agent_proc import AgentProcess, command, wait_until
from tests.broker import Broker
from tests.mqtt_helpers import Listener

PASSWORDS = {"cam-01": "cam-01-secret-pw", "cam-02": "cam-02-secret-pw", "operator": "operator-secret-pw"}
FLEET_ACL = """\
pattern read  faceagent/%u/enroll
pattern read  faceagent/%u/delete
pattern read  faceagent/%u/snapshot
pattern write faceagent/%u/enroll/progress
pattern write faceagent/%u/enroll/result
pattern write faceagent/%u/delete/result
pattern write faceagent/%u/availability
pattern write faceagent/%u/state
pattern write faceagent/%u/telemetry
pattern write faceagent/%u/snapshot/result
pattern write faceagent/%u/snapshot/jpeg
pattern write faceagent-ctl/+/reply

user operator
topic write faceagent/+/enroll
topic read  faceagent/#
"""


def secured_broker(workdir: Path) -> Broker:
    workdir.mkdir(parents=True)
    passwords, acl = workdir / "passwords", workdir / "acl"
    passwords.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, capture_output=True)
    acl.write_text(FLEET_ACL)
    broker = Broker(workdir, extra_conf=f"password_file {passwords}\nacl_file {acl}\nuse_username_as_clientid true\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true\n", "allow_anonymous false\n"))
    return broker


def intruder_connects(broker: Broker) -> Any:
    """cam-02's credentials with cam-01's client id and a persistent session; the CONNACK's flags."""
    answer: dict[str, Any] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="faceagent-cam-01", protocol=mqtt.MQTTv311, clean_session=False)
    client.username_pw_set("cam-02", PASSWORDS["cam-02"])
    client.on_connect = lambda c, u, flags, reason, props: (answer.update(flags=flags, reason=reason), done.set())
    client.on_message = lambda c, u, m: answer.setdefault("messages", []).append(m.topic)
    client.connect(broker.host, broker.port, 30)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
        client.subscribe("faceagent/cam-02/enroll", 1)  # a SUBACK after any queued messages: they would have come first
        probe = threading.Event()
        client.on_subscribe = lambda c, u, mid, reasons, props: probe.set()
        client.subscribe("faceagent/cam-02/delete", 1)
        assert probe.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return answer


def test_another_devices_credentials_cannot_take_a_client_id(tmp_path: Path, emulator: Any, make_agent: Any) -> None:
    broker = secured_broker(tmp_path / "mosquitto")
    broker.start()
    try:
        cam01: AgentProcess = make_agent(broker, device_id="cam-01", start=False, env={"FACEAGENT_MQTT_PASSWORD": PASSWORDS["cam-01"]},
                                         mqtt={"username": "cam-01"})
        operator = Listener(broker.host, broker.port, ["faceagent/cam-01/enroll/result", "faceagent/cam-01/availability"],
                            username="operator", password=PASSWORDS["operator"], client_id="operator-test")
        try:
            cam01.start()
            wait_until(lambda: b"online" in [m[1] for m in _pending(operator)], 30, f"cam-01 online: {cam01.log()[-2000:]}")
            assert cam01.stop() == 0
            for n in range(3):  # commands sent while cam-01 restarts wait in its persistent session
                operator.publish("faceagent/cam-01/enroll", command(f"acl-{n}", person_id="9001"))
            answer = intruder_connects(broker)
            assert answer["reason"] == 0 and not answer["flags"].session_present and not answer.get("messages")
            cam01.start()
            results = {operator.get_json("faceagent/cam-01/enroll/result", 30, where=lambda r: r.get("id") is not None)["id"]
                       for _ in range(3)}
            assert results == {"acl-0", "acl-1", "acl-2"}  # none vanished: cam-01 got every one of them
            for _ in range(3):
                intruder_connects(broker)
            operator.publish("faceagent/cam-01/enroll", command("acl-3", person_id="9001"))  # a round trip after the intruders
            operator.get_json("faceagent/cam-01/enroll/result", 30, where=lambda r: r.get("id") == "acl-3")
            assert cam01.log().count("MQTT connected") == 2 and "MQTT disconnected" not in cam01.log().split("MQTT connected")[-1]
        finally:
            operator.close()
    finally:
        broker.stop()


def _pending(listener: Listener) -> list[tuple[str, bytes, Any, bool]]:
    try:
        return [listener.get(timeout=0.2)]
    except TimeoutError:
        return []
