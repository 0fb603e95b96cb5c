"""The broker conformance suite: the same end-to-end checks on every broker a fleet may already run.

mosquitto 2.0 with MQTT 5 and with 3.1.1, RabbitMQ 3.10's MQTT plugin, NATS 2.9's MQTT (JetStream), and a device
on a mosquitto edge bridged with MQTT 3.1.1 to a central mosquitto where the operator is. Each is a private
instance on free loopback ports, one per test session (tests/brokers.py). `make test-brokers` runs it (marker
`brokers`); docs/brokers.md is the matrix these checks hold.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.service.home_assistant import node_id
from agent.service.protocol import MAX_PAYLOAD_BYTES
from tests.agent_proc import COMMAND_KEY, AgentProcess, signed, wait_until
from tests.broker import Broker
from tests.brokers import BridgedMosquitto, CuttableLink, NatsBroker, RabbitBroker
from tests.conftest import DATA, REPO, faces
from tests.iai_helpers import control
from tests.mqtt_helpers import Listener

pytestmark = pytest.mark.brokers

SITES = ["mosquitto-5", "mosquitto-3.1.1", "rabbitmq", "nats", "bridge"]


@dataclass(frozen=True)
class Site:
    """Where the device connects (`device`, with `protocol` in its config) and where the operator is (`operator`)."""

    name: str
    device: Any  # host, port, url
    operator: Any
    protocol: str
    operator_protocol: int  # what the test's own clients speak there

    def listener(self, topics: list[str]) -> Listener:
        return Listener(self.operator.host, self.operator.port, topics, protocol=self.operator_protocol,
                        client_id=f"test-{uuid.uuid4().hex[:10]}")


def _running(server: Any) -> Iterator[Any]:
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitBroker]:
    yield from _running(RabbitBroker(tmp_path_factory.mktemp("rabbitmq")))


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsBroker]:
    yield from _running(NatsBroker(tmp_path_factory.mktemp("nats")))


@pytest.fixture(scope="session")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgedMosquitto]:
    yield from _running(BridgedMosquitto(tmp_path_factory.mktemp("bridge")))


@pytest.fixture(params=SITES)
def site(request: pytest.FixtureRequest) -> Site:
    """One broker set-up of the matrix; its brokers are started once per session, when first asked for."""
    name = request.param
    if name.startswith("mosquitto"):
        broker: Broker = request.getfixturevalue("broker")
        v5 = name == "mosquitto-5"
        return Site(name, broker, broker, "5" if v5 else "3.1.1", mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if name == "bridge":
        pair: BridgedMosquitto = request.getfixturevalue("bridged")
        return Site(name, pair.edge, pair.central, "5", mqtt.MQTTv5)
    server = request.getfixturevalue(name)
    return Site(name, server, server, "3.1.1", mqtt.MQTTv311)


def start_device(site: Site, make_agent: Any, endpoint: Any = None, **overrides: Any) -> AgentProcess:
    """A signed-commands device with Home Assistant discovery on `site` (through `endpoint` when given), online."""
    device_id = f"cam-{uuid.uuid4().hex[:8]}"
    agent: AgentProcess = make_agent(
        endpoint or site.device, device_id=device_id, start=False, env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY},
        mqtt={"protocol": site.protocol}, commands={"require_signature": True}, home_assistant={"discovery": True}, **overrides)
    agent.start()
    wait_online(site, agent)
    return agent


def wait_online(site: Site, agent: AgentProcess) -> None:
    listener = site.listener([f"{agent.base}/availability"])
    try:
        wait_until(lambda: agent.alive and _next_payload(listener) == b"online", 60, f"{agent.device_id} online: {agent.log()[-2000:]}")
    finally:
        listener.close()


def _next_payload(listener: Listener) -> bytes | None:
    try:
        return listener.get(timeout=0.5)[1]
    except TimeoutError:
        return None


def ctl_enroll(site: Site, tmp_path: Path, agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`faceagent ctl enroll` at the operator's broker, signing with the fleet's key."""
    config = tmp_path / f"operator-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(yaml.safe_dump({"mqtt": {"url": site.operator.url, "protocol": "5" if site.operator_protocol == mqtt.MQTTv5 else "3.1.1"},
                                      "camera": {"type": "files", "path": str(DATA / "grace_hopper.jpg")}, "state_dir": str(tmp_path)}))
    return subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--config", str(config), "--device", agent.device_id,
                           "--timeout", "60", *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "FACEAGENT_COMMAND_KEY": COMMAND_KEY})


def test_enroll_through_ctl_signed_replayed_and_oversized(site: Site, make_agent: Any, emulator: Any, person: str, tmp_path: Path) -> None:
    agent = start_device(site, make_agent)
    base = agent.base
    listener = site.listener([f"{base}/enroll/result", "faceagent-ctl/+/reply"])
    try:
        first = ctl_enroll(site, tmp_path, agent, "--person-id", person, "--id", "conf-1", "--json")
        assert first.returncode == 0, first.stdout + first.stderr + agent.log()[-3000:]
        assert json.loads(first.stdout)["status"] == "succeeded" and len(faces(emulator, person)) == 2
        # The reply address travelled in the (signed) payload: the answer reached ctl's private topic, with the
        # correlation value in its body, even where Response Topic and Correlation Data cannot go (3.1.1, the bridge).
        reply = next(json.loads(p) for t, p in _drain(listener, "faceagent-ctl/", lambda d: d.get("id") == "conf-1" and "status" in d))
        assert reply["correlation"] == "conf-1" and reply["status"] == "succeeded"

        again = ctl_enroll(site, tmp_path, agent, "--person-id", person, "--id", "conf-1", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["replayed"] is True and len(faces(emulator, person)) == 2  # nothing enrolled twice

        unsigned = json.dumps({"id": "conf-2", "person_id": person}).encode()
        listener.publish(f"{base}/enroll", unsigned)
        refused = listener.get_json(f"{base}/enroll/result", 30, where=lambda r: r.get("payload_sha256") is not None)
        assert refused["status"] == "rejected" and "signed commands are required" in refused["error"]["message"]

        oversized = signed("conf-3", person, device_id=agent.device_id, create_person={"group_id": "staff", "person_name": "x" * 60},
                           capture_timeout_s=5.0) + b" " * (MAX_PAYLOAD_BYTES + 1000)
        listener.publish(f"{base}/enroll", oversized)
        too_big = listener.get_json(f"{base}/enroll/result", 30, where=lambda r: "bytes" in str(r.get("error", {}).get("message")))
        assert too_big["status"] == "rejected" and f"commands are at most {MAX_PAYLOAD_BYTES} bytes" in too_big["error"]["message"]
    finally:
        listener.close()


def test_availability_will_retained_state_discovery_and_a_command_sent_while_down(site: Site, make_agent: Any, emulator: Any,
                                                                                  person: str) -> None:
    agent = start_device(site, make_agent, process=True)  # killed: the broker publishes its will
    base, discovery = agent.base, f"homeassistant/sensor/{node_id(agent.device_id)}/last_enrollment/config"
    for _ in range(2):  # the first subscriber may see them live; the second, subscribing after them, only as retained copies
        late = site.listener([f"{base}/state", discovery])
        try:
            _, state, _, retained = late.get(f"{base}/state", 30)
            _, config, _, config_retained = late.get(discovery, 30)
        finally:
            late.close()
    assert retained and json.loads(state)["queue_depth"] == 0
    assert config_retained and json.loads(config)["availability_topic"] == f"{base}/availability"
    watcher = site.listener([f"{base}/availability", f"{base}/enroll/result"])
    try:
        agent.kill()  # no clean stop: the broker publishes the will
        wait_until(lambda: _next_payload(watcher) == b"offline", 60, "the will (offline)")
        watcher.publish(f"{base}/enroll", signed("down-1", person, device_id=agent.device_id))  # while the device is down
        agent.start()
        result = watcher.get_json(f"{base}/enroll/result", 60, where=lambda r: r.get("id") == "down-1")
        assert result["status"] == "succeeded", agent.log()[-3000:]
    finally:
        watcher.close()


def test_a_result_finished_while_the_broker_was_away_is_published_when_it_is_back(site: Site, make_agent: Any, emulator: Any,
                                                                                person: str) -> None:
    link = CuttableLink(site.device.host, site.device.port)
    try:
        agent = start_device(site, make_agent, endpoint=link)
        listener = site.listener([f"{agent.base}/enroll/result", f"{agent.base}/enroll/progress"])
        try:
            control(emulator, delay_next={"ms": 3000, "action": "CreateFace"})  # the upload is in flight when the link goes
            listener.publish(f"{agent.base}/enroll", signed("away-1", person, device_id=agent.device_id))
            listener.get_json(f"{agent.base}/enroll/progress", 30, where=lambda p: p.get("state") == "uploading")
            link.cut()
            wait_until(lambda: "command away-1 succeeded" in agent.log(), 60, "the result, stored while the broker is away")
            assert not any(t.endswith("/result") for t, _ in _drain(listener, agent.base, lambda d: True, timeout=0.2))
            link.restore()
            result = listener.get_json(f"{agent.base}/enroll/result", 60, where=lambda r: r.get("id") == "away-1")
            assert result["status"] == "succeeded" and len(faces(emulator, person)) == 2
        finally:
            listener.close()
    finally:
        link.close()


def _drain(listener: Listener, prefix: str, where: Any, timeout: float = 30.0) -> Iterator[tuple[str, bytes]]:
    """Messages whose topic starts with `prefix` and whose JSON satisfies `where`, until none comes within `timeout`."""
    while True:
        try:
            topic, payload, _, _ = listener.get(timeout=timeout)
        except TimeoutError:
            return
        if topic.startswith(prefix):
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if isinstance(data, dict) and where(data):
                yield topic, payload


@pytest.mark.parametrize("kind", ["rabbitmq", "nats"])
def test_the_default_config_on_a_broker_without_mqtt5_connects_with_3_1_1_and_says_so_once(
        kind: str, request: pytest.FixtureRequest, make_agent: Any, emulator: Any, person: str, tmp_path: Path) -> None:
    """NATS 2.9 answers MQTT 5 with "Unsupported protocol version", RabbitMQ 3.10 hangs up: the daemon, doctor and ctl
    all fall back to 3.1.1 within seconds, and say so once, naming the setting that skips the attempt."""
    from agent.cli.doctor_checks import check_broker
    from agent.config import config_from_mapping

    server = request.getfixturevalue(kind)
    site = Site(kind, server, server, "5", mqtt.MQTTv311)
    agent = make_agent(server, device_id=f"cam-{uuid.uuid4().hex[:8]}", start=False, process=True)  # mqtt.protocol left at 5
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    agent.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    agent.start()
    listener = site.listener([f"{agent.base}/availability"])
    try:
        wait_until(lambda: agent.alive and _next_payload(listener) == b"online", 20, f"online with the default config: {agent.log()[-2000:]}")
        messages: list[bytes] = []
        while not any(b"READY=1" in m for m in messages):
            messages.append(notify.recv(4096))
        assert "broker connected (MQTT 3.1.1)" in next(m for m in messages if b"READY=1" in m).decode()
    finally:
        listener.close()
        notify.close()
    log = agent.log()
    assert log.count("does not accept MQTT 5") == 1 and 'mqtt.protocol: "3.1.1"' in log
    assert "with MQTT 3.1.1" in log and "refused" not in log

    check = check_broker(config_from_mapping({"mqtt": {"url": server.url}, "camera": {"type": "files", "path": "."}}, {}))
    assert check.status == "warn" and "connected with MQTT 3.1.1" in check.detail and 'mqtt.protocol: "3.1.1"' in check.fix

    ctl = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", server.url, "--device", agent.device_id,
                          "--person-id", person, "--timeout", "60"], capture_output=True, text=True, timeout=120, check=False,
                         cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert ctl.returncode == 0, ctl.stdout + ctl.stderr
    assert "does not accept MQTT 5" in ctl.stderr and ctl.stdout.startswith(f"succeeded: person {person}")


def session_client(server: Any, user: str, password: str, client_id: str) -> tuple[mqtt.Client, list[tuple[str, Any]]]:
    """A persistent-session 3.1.1 client, connected; its CONNACK (or refusal) and messages as events, in order."""
    import threading

    events: list[tuple[str, Any]] = []
    answered = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False)
    client.username_pw_set(user, password)
    client.reconnect_delay_set(30, 30)  # one attempt is what is looked at
    client.on_connect = lambda c, u, flags, reason, props: (events.append(("connack", reason)), answered.set())
    client.on_disconnect = lambda c, u, flags, reason, props: (events.append(("closed", reason)), answered.set())
    client.on_message = lambda c, u, m: events.append(("message", m.payload))
    client.on_subscribe = lambda c, u, mid, reasons, props: events.append(("subscribed", reasons))
    client.connect(server.host, server.port, 30)
    client.loop_start()
    assert answered.wait(20), "no answer to CONNECT"
    return client, events


def test_rabbitmq_permissions_keep_a_devices_queued_commands_from_another_devices_credentials(rabbitmq: RabbitBroker) -> None:
    """docs/brokers.md's RabbitMQ permissions: each user may use only the session queue named after its own client id."""
    tag = uuid.uuid4().hex[:6]
    cam1, cam2 = f"cam1-{tag}", f"cam2-{tag}"
    for user in (cam1, cam2):
        queue = f"mqtt-subscription-faceagent-{user}qos[01]"
        rabbitmq.ctl("add_user", user, f"{user}-password")
        rabbitmq.ctl("set_permissions", "-p", "/", user, f"^{queue}$", f"^(amq\\.topic|{queue})$",
                     f"^(amq\\.topic|{queue})$")
    device, events = session_client(rabbitmq, cam1, f"{cam1}-password", f"faceagent-{cam1}")
    device.subscribe(f"faceagent/{cam1}/enroll", 1)
    wait_until(lambda: any(kind == "subscribed" for kind, _ in events), 20, "the device's SUBACK")
    device.disconnect()
    device.loop_stop()
    operator = session_client(rabbitmq, cam1, f"{cam1}-password", f"operator-{tag}")[0]
    operator.publish(f"faceagent/{cam1}/enroll", b"queued while away", qos=1).wait_for_publish(10)
    operator.disconnect()
    operator.loop_stop()

    intruder, seen = session_client(rabbitmq, cam2, f"{cam2}-password", f"faceagent-{cam1}")  # cam-01's client id
    intruder.loop_stop()
    assert seen[0][0] == "connack" and seen[0][1].is_failure and ("message", b"queued while away") not in seen

    device, events = session_client(rabbitmq, cam1, f"{cam1}-password", f"faceagent-{cam1}")
    try:
        wait_until(lambda: ("message", b"queued while away") in events, 20, "the queued command, for the device itself")
    finally:
        device.disconnect()
        device.loop_stop()
