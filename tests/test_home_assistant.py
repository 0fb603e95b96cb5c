"""Home Assistant MQTT discovery: payloads checked against Home Assistant's documented keys, and the daemon end to end.

The key lists below are copied from Home Assistant's documentation (home-assistant.io, source/_integrations/:
mqtt.markdown "Discovery", sensor.mqtt, image.mqtt, button.mqtt, text.mqtt; 2024-2025 versions), not from our code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.config import config_from_mapping
from agent.errors import ConfigError
from agent.service.home_assistant import discovery_messages, removal_messages
from tests.agent_proc import COMMAND_KEY, command, listen, result_for
from tests.broker import Broker
from tests.conftest import faces
from tests.mqtt_helpers import Listener

# Keys every MQTT entity platform documents (availability, device registry, attributes, naming).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device", "enabled_by_default",
          "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
          "object_id", "origin", "payload_available", "payload_not_available", "platform", "qos", "unique_id", "default_entity_id"}
DOCUMENTED = {
    "sensor": COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template", "options", "suggested_display_precision",
                        "state_class", "state_topic", "unit_of_measurement", "value_template"},
    "image": COMMON | {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
    "button": COMMON | {"command_template", "command_topic", "device_class", "payload_press", "retain"},
    "text": COMMON | {"command_template", "command_topic", "max", "min", "mode", "pattern", "retain", "state_topic", "value_template"},
}
REQUIRED = {"sensor": {"state_topic"}, "image": {"image_topic"}, "button": {"command_topic"}, "text": {"command_topic"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
               "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}  # name required
SENSOR_DEVICE_CLASSES = {"timestamp", "enum", None}
ENTITY_CATEGORIES = {"config", "diagnostic"}
TOPIC = re.compile(r"^homeassistant/(sensor|image|button|text)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")


def ha_config(**home_assistant: Any) -> Any:
    return config_from_mapping({"device_id": "cam.lobby-1", "camera": {"type": "files", "path": "/x"},
                                "home_assistant": {"discovery": True, **home_assistant}}, {})


@pytest.mark.parametrize("options", [{}, {"allow_enroll": True}])
def test_discovery_payloads_use_only_documented_keys(options: dict[str, Any]) -> None:
    messages = discovery_messages(ha_config(**options))
    components = [TOPIC.match(topic).group(1) for topic, _ in messages]  # type: ignore[union-attr]
    assert sorted(set(components)) == sorted({"sensor", "image", "button"} | ({"text"} if options else set()))
    unique_ids = set()
    for (topic, payload), component in zip(messages, components):
        config = json.loads(payload)
        assert set(config) <= DOCUMENTED[component], (topic, set(config) - DOCUMENTED[component])
        assert REQUIRED[component] <= set(config), topic
        assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"] == ["faceagent_cam_lobby-1"]
        assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"] == "faceagent"
        assert config["availability_topic"] == "faceagent/cam.lobby-1/availability"  # online/offline: HA's defaults
        assert config.get("entity_category") in ENTITY_CATEGORIES | {None}
        if component == "sensor":
            assert config.get("device_class") in SENSOR_DEVICE_CLASSES and config["state_topic"] == "faceagent/cam.lobby-1/state"
            assert ("options" in config) == (config.get("device_class") == "enum")
        unique_ids.add(config["unique_id"])
    assert len(unique_ids) == len(messages)


def test_removal_covers_every_topic_any_setting_announces() -> None:
    announced = {topic for options in ({}, {"allow_enroll": True}) for topic, _ in discovery_messages(ha_config(**options))}
    assert announced <= set(removal_messages(ha_config()))


def test_home_assistant_cannot_enroll_around_signed_commands() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"camera": {"type": "files", "path": "/x"}, "commands": {"require_signature": True},
                             "home_assistant": {"discovery": True, "allow_enroll": True}}, {"FACEAGENT_COMMAND_KEY": COMMAND_KEY})
    assert "home_assistant.allow_enroll" in dict(info.value.problems)
    signed = config_from_mapping({"camera": {"type": "files", "path": "/x"}, "commands": {"require_signature": True},
                                  "home_assistant": {"discovery": True}}, {"FACEAGENT_COMMAND_KEY": COMMAND_KEY})
    assert not any("/button/" in topic or "/text/" in topic for topic, _ in discovery_messages(signed))  # unsigned buttons would be refused


# --- the daemon ---------------------------------------------------------------------------------------------------------


def discovery_listener(broker: Broker) -> Listener:
    return Listener(broker.host, broker.port, ["homeassistant/#"])


def configs_seen(listener: Listener, count: int) -> dict[str, bytes]:
    seen: dict[str, bytes] = {}
    while len(seen) < count:
        topic, payload, _, _ = listener.get(timeout=30)
        if topic.endswith("/config"):
            seen[topic] = payload
    return seen


def test_the_daemon_announces_itself_again_when_home_assistant_starts(broker: Broker, make_agent: Any) -> None:
    watcher = discovery_listener(broker)
    agent = make_agent(broker, home_assistant={"discovery": True})
    try:
        expected = 7  # five sensors, the image, the snapshot button
        first = configs_seen(watcher, expected)
        assert all(json.loads(p)["device"]["identifiers"] == ["faceagent_cam-test"] for p in first.values())
        watcher.publish("homeassistant/status", b"online", qos=1)  # Home Assistant's birth message
        assert set(configs_seen(watcher, expected)) == set(first)
    finally:
        watcher.close()
        agent.close()


def test_the_snapshot_button_feeds_the_image_entity_with_a_raw_jpeg(broker: Broker, make_agent: Any) -> None:
    agent = make_agent(broker, home_assistant={"discovery": True})
    button = next(json.loads(p) for t, p in discovery_messages(ha_config()) if "/button/" in t)
    listener = Listener(broker.host, broker.port, [f"{agent.base}/snapshot/jpeg"])
    try:
        listener.publish(f"{agent.base}/snapshot", button["payload_press"])  # what pressing the button publishes
        _, jpeg, _, retained = listener.get(f"{agent.base}/snapshot/jpeg", timeout=30)
        assert jpeg[:3] == b"\xff\xd8\xff" and not retained  # a JPEG, not base64; faces are not kept at the broker
    finally:
        listener.close()


def test_enrolling_from_home_assistant_only_when_allowed(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    allowed = make_agent(broker, "cam-ha", home_assistant={"discovery": True, "allow_enroll": True})
    listener = listen(broker, allowed.base)
    try:
        listener.publish(f"{allowed.base}/ha/enroll", person.encode())  # what the text entity publishes: the typed text
        result = listener.get_json(f"{allowed.base}/enroll/result", 30)
        assert result["status"] == "succeeded" and result["id"].startswith("ha-") and result["person_id"] == person
    finally:
        listener.close()
    off = make_agent(broker, "cam-off", home_assistant={"discovery": True})
    listener = listen(broker, off.base)
    try:
        listener.publish(f"{off.base}/ha/enroll", person.encode())
        listener.publish(f"{off.base}/enroll", command("after", person))  # the device handles its commands in order
        assert result_for(listener, off.base, "after")["status"] == "succeeded"
        results = [json.loads(p) for t, p, _, _ in listener._unread if t.endswith("/enroll/result")]
        assert not any(str(r.get("id")).startswith("ha-") for r in results)
        assert len(faces(emulator, person)) == 3  # one from each device's accepted command
    finally:
        listener.close()


def test_ha_remove_clears_every_discovery_config_at_the_broker(broker: Broker, make_agent: Any, tmp_path: Path) -> None:
    agent = make_agent(broker, home_assistant={"discovery": True})
    watcher = discovery_listener(broker)
    try:
        configs_seen(watcher, 7)
        proc = subprocess.run([sys.executable, "-m", "agent", "ha", "remove", "--config", str(agent.config_path)], capture_output=True,
                              text=True, timeout=60, check=False, env=agent.env)
        assert proc.returncode == 0, proc.stderr
        assert "removed the Home Assistant entities of device cam-test" in proc.stdout
    finally:
        watcher.close()
    assert retained_configs(broker, "faceagent_cam-test") == []


def retained_configs(broker: Broker, node: str) -> list[str]:
    """`node`'s discovery configs still retained at the broker: a new subscriber gets them before a live marker it sends."""
    fresh = Listener(broker.host, broker.port, [f"homeassistant/+/{node}/+/config", "homeassistant/marker"])
    try:
        fresh.publish("homeassistant/marker", b"end", qos=1)
        found = []
        while True:
            topic, payload, _, retained = fresh.get(timeout=30)
            if topic == "homeassistant/marker":
                return found
            if retained and payload:
                found.append(topic)
    finally:
        fresh.close()


def test_uninstall_removes_the_home_assistant_entities(broker: Broker, tmp_path: Path) -> None:
    """A staging uninstall (--root) leaves the live broker alone and says so; the command a real uninstall runs removes them."""
    import site

    import yaml

    from tests.conftest import REPO, building_this_checkout

    root = tmp_path / "root"
    with building_this_checkout():
        installed = subprocess.run(["bash", str(REPO / "systemd/install.sh"), "--root", str(root), "--pip-args", "--no-deps"],
                                   capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr
    # The staging venv sees this test venv's packages (paho, pydantic) instead of downloading them.
    venv_site = next((root / "opt/faceagent/lib").glob("python3*/site-packages"))
    (venv_site / "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    config_file = root / "etc/faceagent/agent.yaml"
    config = yaml.safe_load(config_file.read_text())
    config.update(device_id="cam-uninstall", mqtt={**config["mqtt"], "url": broker.url}, home_assistant={"discovery": True})
    config_file.write_text(yaml.safe_dump(config))
    announcer = Listener(broker.host, broker.port, ["none/none"])
    try:
        for topic, payload in discovery_messages(config_from_mapping(config, {})):
            announcer.publish(topic, payload, qos=1, retain=True)  # as the running daemon left them
    finally:
        announcer.close()
    assert len(retained_configs(broker, "faceagent_cam-uninstall")) == 7
    # what uninstall.sh runs on a device (not from a staging tree), with the installed faceagent
    removed = subprocess.run([str(root / "opt/faceagent/bin/faceagent"), "ha", "remove", "--if-enabled", "--config", str(config_file)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert removed.returncode == 0, removed.stderr
    assert "removed the Home Assistant entities of device cam-uninstall" in removed.stdout
    assert retained_configs(broker, "faceagent_cam-uninstall") == []
    announcer = Listener(broker.host, broker.port, ["none/none"])
    try:
        for topic, payload in discovery_messages(config_from_mapping(config, {})):
            announcer.publish(topic, payload, qos=1, retain=True)  # announced again
    finally:
        announcer.close()
    staged = subprocess.run(["bash", str(REPO / "systemd/uninstall.sh"), "--root", str(root)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert staged.returncode == 0, staged.stderr
    assert "the Home Assistant entities were left alone (no broker is contacted from a staging tree)" in staged.stdout
    assert len(retained_configs(broker, "faceagent_cam-uninstall")) == 7 and not (root / "opt/faceagent").exists()


def test_an_enroll_from_home_assistant_delivered_again_after_a_lost_puback_runs_once(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    """The text entity's message carries no id: every delivery of that one message must still map to one command id."""
    agent = make_agent(broker, "cam-ha", home_assistant={"discovery": True, "allow_enroll": True})
    listener = listen(broker, agent.base)
    try:
        lost = threading.Event()
        link = agent.app.service.link
        link.ack = lambda message: lost.set()  # stored, but the PUBACK never leaves: the broker keeps the message
        listener.publish(f"{agent.base}/ha/enroll", person.encode())
        first = listener.get_json(f"{agent.base}/enroll/result", 30)
        assert first["status"] == "succeeded" and lost.is_set()
        assert agent.stop() == 0
        agent.start(broker)  # the persistent session delivers the unacknowledged message again
        again = listener.get_json(f"{agent.base}/enroll/result", 30)
        assert again["id"] == first["id"] and again["replayed"] is True and again["face_ids"] == first["face_ids"]
        assert len(faces(emulator, person)) == 2  # the seeded face and one enrollment
        listener.publish(f"{agent.base}/ha/enroll", person.encode())  # typed again: a new enrollment
        second = listener.get_json(f"{agent.base}/enroll/result", 30, where=lambda r: r.get("id") != first["id"])
        assert second["status"] == "succeeded" and not second.get("replayed") and len(faces(emulator, person)) == 3
    finally:
        listener.close()
