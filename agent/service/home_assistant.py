"""Home Assistant MQTT discovery (opt-in: `home_assistant.discovery`), built from the device's own topics.

Per-entity discovery as Home Assistant documents it (integrations/mqtt, sensor.mqtt, image.mqtt,
button.mqtt, text.mqtt): one retained JSON config per entity on
`<discovery_prefix>/<component>/faceagent_<device>/<object_id>/config`, every entity tied to one device
and to the device's availability topic (`online`/`offline`, Home Assistant's default payloads). An empty
retained payload on the same topic removes the entity (`removal_messages`, `faceagent ha remove`).

The sensors read the retained `base/state`; the image shows the latest annotated snapshot, published as a
raw JPEG on `base/snapshot/jpeg`. The snapshot button exists only when commands need no signature, and the
enroll text entity only with `home_assistant.allow_enroll` (which the config refuses together with
`commands.require_signature`: Home Assistant cannot sign). Light on purpose: `faceagent ha` imports it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent.config import Config
from agent.service.protocol import IAI_ID_PATTERN, Topics

SNAPSHOT_REQUEST_ID = "ha-snapshot"  # what the snapshot button sends; snapshot ids are not stored, so one id serves every press
HA_ENROLL_EXPIRY_S = 300  # an enrollment typed in Home Assistant is not captured later than this (whoever stands there then)
CLOUD_STATUSES = ["ok", "auth_failed", "in_arrears", "not_activated", "suspended", "region", "unreachable", "error"]


@dataclass(frozen=True)
class Entity:
    component: str  # sensor, image, button, text
    object_id: str
    config: dict[str, Any]  # the entity's own keys; device, origin, availability and unique_id are added


def node_id(device_id: str) -> str:
    """The discovery topic's node level: Home Assistant allows only [a-zA-Z0-9_-] there."""
    return "faceagent_" + re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def discovery_topic(prefix: str, component: str, device_id: str, object_id: str) -> str:
    return f"{prefix}/{component}/{node_id(device_id)}/{object_id}/config"


def status_topic(config: Config) -> str:
    """Where Home Assistant announces itself (`online` after it starts): the configs are published again then."""
    return f"{config.home_assistant.discovery_prefix}/status"


def _last(field: str) -> str:
    return f"{{{{ value_json.last_result.{field} if value_json.last_result else None }}}}"


def entities(config: Config, all_kinds: bool = False) -> list[Entity]:
    """The entities this device announces (`all_kinds`: also those its settings leave out, for removal)."""
    topics = Topics(config.base_topic)
    found = [
        Entity("sensor", "last_enrollment", {
            "name": "Last enrollment", "state_topic": topics.state, "value_template": _last("status"),
            "json_attributes_topic": topics.state, "json_attributes_template": "{{ (value_json.last_result or {}) | tojson }}",
            "icon": "mdi:face-recognition"}),
        Entity("sensor", "last_person", {
            "name": "Last enrolled person", "state_topic": topics.state, "value_template": _last("person_id"), "icon": "mdi:account"}),
        Entity("sensor", "last_enrollment_time", {
            "name": "Last enrollment time", "state_topic": topics.state, "value_template": _last("finished_at"),
            "device_class": "timestamp"}),
        Entity("sensor", "queue_depth", {
            "name": "Queue depth", "state_topic": topics.state, "value_template": "{{ value_json.queue_depth }}",
            "state_class": "measurement", "entity_category": "diagnostic", "icon": "mdi:tray-full"}),
        Entity("sensor", "cloud_status", {
            "name": "Cloud status", "state_topic": topics.state, "device_class": "enum", "options": CLOUD_STATUSES,
            "value_template": "{{ value_json.cloud.status if value_json.cloud else None }}", "entity_category": "diagnostic"}),
        Entity("image", "snapshot", {"name": "Snapshot", "image_topic": topics.snapshot_jpeg, "content_type": "image/jpeg"}),
    ]
    if all_kinds or not config.commands.require_signature:
        found.append(Entity("button", "take_snapshot", {
            "name": "Take snapshot", "command_topic": topics.snapshot, "payload_press": json.dumps({"id": SNAPSHOT_REQUEST_ID}),
            "qos": 1, "icon": "mdi:camera"}))
    if all_kinds or config.home_assistant.allow_enroll:
        found.append(Entity("text", "enroll", {
            "name": "Enroll person id", "command_topic": topics.ha_enroll, "min": 1, "max": 64, "pattern": IAI_ID_PATTERN[1:-1],
            "mode": "text", "qos": 1, "icon": "mdi:account-plus"}))
    return found


def device_info(config: Config) -> dict[str, Any]:
    return {"identifiers": [node_id(config.device_id)], "name": f"faceagent {config.device_id}", "manufacturer": "faceagent",
            "model": "face enrollment agent", "sw_version": __version__}


def discovery_messages(config: Config) -> list[tuple[str, str]]:
    """(topic, JSON config) of every entity, published retained with QoS 1 on every connect and when Home Assistant starts."""
    prefix, device = config.home_assistant.discovery_prefix, device_info(config)
    origin = {"name": "faceagent", "sw_version": __version__}
    availability = Topics(config.base_topic).availability
    messages = []
    for entity in entities(config):
        payload = {**entity.config, "unique_id": f"{node_id(config.device_id)}_{entity.object_id}", "availability_topic": availability,
                   "device": device, "origin": origin}
        messages.append((discovery_topic(prefix, entity.component, config.device_id, entity.object_id), json.dumps(payload)))
    return messages


def removal_messages(config: Config) -> list[str]:
    """Every discovery topic this device may have used: an empty retained payload on each removes the entity."""
    prefix = config.home_assistant.discovery_prefix
    return [discovery_topic(prefix, e.component, config.device_id, e.object_id) for e in entities(config, all_kinds=True)]


HA_ID_CHAIN = 8  # ids one (packet id, text) pair can take before a random one: see `enroll_command_ids`


def enroll_command_ids(payload: bytes, mid: int) -> list[str]:
    """The command ids one text-entity message may map to, in order; the same for every delivery of that message.

    The message carries no id, but the broker delivers it again (after a lost PUBACK) with the same packet id
    (MQTT 4.4), which it cannot give another message while this one is unacknowledged. A later message with the same
    packet id and the same text is a new enrollment: it takes the first id of the chain not used yet (the intake
    looks them up), and its own redelivery the last one used.
    """
    return [f"ha-{hashlib.sha256(b'%d:%d:' % (mid, n) + payload).hexdigest()[:16]}" for n in range(HA_ID_CHAIN)]


def enroll_command(payload: bytes, now: float | None = None, command_id: str | None = None) -> dict[str, Any]:
    """The enroll command for a person id typed into the text entity (validated like any other command afterwards)."""
    text = payload.decode("utf-8", errors="replace").strip()
    issued = time.time() if now is None else now
    return {"id": command_id or f"ha-{uuid.uuid4().hex[:16]}", "person_id": text, "expires_at": int(issued + HA_ENROLL_EXPIRY_S)}
