"""`faceagent ha show | remove`: the Home Assistant discovery configs of this device; `remove` deletes them at the broker.

Removal publishes an empty retained payload on every discovery topic the device may have used (Home Assistant
removes the entity on it). systemd/uninstall.sh runs `faceagent ha remove --if-enabled` before removing the venv.
"""

from __future__ import annotations

import argparse
import threading
import uuid
from typing import Any

from agent.cli.common import fail, load_config_or_exit
from agent.config import parse_broker_url
from agent.errors import ExitCode

CONNECT_TIMEOUT_S = 10.0


def cmd_ha(args: argparse.Namespace) -> int:
    from agent.service.home_assistant import discovery_messages, removal_messages

    config = load_config_or_exit(args)
    if args.ha_command == "show":
        for topic, payload in discovery_messages(config):
            print(f"{topic} {payload}")
        return ExitCode.OK
    if args.if_enabled and not config.home_assistant.discovery:
        print("home_assistant.discovery is off: no Home Assistant entities to remove")
        return ExitCode.OK
    topics = removal_messages(config)
    failure = _publish_empty_retained(config, topics)
    if failure is not None:
        return fail(failure, ExitCode.TIMEOUT)
    print(f"removed the Home Assistant entities of device {config.device_id}: {len(topics)} empty retained configs under "
          f"{config.home_assistant.discovery_prefix}/")
    return ExitCode.OK


def _publish_empty_retained(config: Any, topics: list[str]) -> str | None:
    """Connect with the device's own broker settings and clear every topic; why it could not, or None."""
    from agent.service.mqtt import build_client, connect_async

    broker = parse_broker_url(config.mqtt.url)
    connected = threading.Event()
    refused: list[str] = []
    password = config.secrets.mqtt_password.get_secret_value() if config.secrets.mqtt_password else None
    client = build_client(config.mqtt.model_copy(update={"session_expiry_s": 0}), f"faceagent-ha-{uuid.uuid4().hex[:8]}",
                          config.mqtt.username, password)

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    connect_async(client, config.mqtt.model_copy(update={"session_expiry_s": 0}))
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_S) or refused:
            why = f"refused the connection: {refused[0]}" if refused else "cannot be reached"
            return f"the broker at {broker.host}:{broker.port} {why}: nothing was removed"
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in topics]
        for info in infos:
            info.wait_for_publish(CONNECT_TIMEOUT_S)
        return None
    finally:
        client.disconnect()
        client.loop_stop()
