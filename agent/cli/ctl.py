"""`faceagent ctl enroll`: the operator side — publish an enroll command, stream its progress, print its result.

With MQTT 5 the command carries a Response Topic private to this run and the command id as Correlation
Data; with 3.1.1 the device's result topic is watched for the id. Every command expires when this tool
stops waiting (`expires_at`, not MQTT's Message Expiry, so a device that was down still answers `expired`
when it comes back instead of enrolling whoever stands there then).
Exit codes: 0 succeeded, 1 partial/failed/rejected/expired/unknown, 3 no result before the timeout.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
import uuid
from typing import Any

from agent.cli.common import fail, format_result, optional_config
from agent.config import parse_broker_url
from agent.errors import ExitCode


def cmd_ctl_enroll(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.logs import SECRETS
    from agent.service.mqtt import build_client, connect_async
    from agent.service.protocol import Topics, sign_command

    config = optional_config(args)
    url = args.broker or config.mqtt.url
    try:
        broker = parse_broker_url(url)
    except ValueError as exc:
        return fail(f"--broker {url!r}: {exc}", ExitCode.USAGE)
    SECRETS.add(broker.password)
    mqtt_cfg = config.mqtt.model_copy(update={"url": f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}",
                                              "session_expiry_s": 0})
    username = broker.username or config.mqtt.username
    password = broker.password or (config.secrets.mqtt_password.get_secret_value() if config.secrets.mqtt_password else None)
    topics = Topics(f"{mqtt_cfg.topic_prefix}/{args.device}")
    command_id = args.command_id or uuid.uuid4().hex
    command: dict[str, Any] = {"id": command_id, "person_id": args.person_id, "faces": args.faces}
    if args.timeout > 0:
        command["expires_at"] = int(time.time() + args.timeout) + 1
    if args.create_person:
        command["create_person"] = {"group_id": args.create_person, "person_name": args.person_name or args.person_id}
    if config.secrets.command_key is not None:
        command.update(device_id=args.device, ts=int(time.time()))
        command["sig"] = sign_command(command, config.secrets.command_key.get_secret_value().encode())

    client_id = f"faceagent-ctl-{uuid.uuid4().hex[:8]}"
    v5 = mqtt_cfg.protocol == "5"
    response_topic = f"faceagent-ctl/{client_id}/result"
    client = build_client(mqtt_cfg, client_id, username, password)
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    subscribed = queue.Queue[bool]()

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            events.put(("error", {"message": f"broker refused the connection: {reason}"}))
            return
        c.subscribe([(topics.progress, 0), (topics.result, 1)] + ([(response_topic, 1)] if v5 else []))

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        subscribed.put(True)

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("id") not in (command_id, None):
            return
        kind = "progress" if message.topic == topics.progress or ("state" in data and "status" not in data) else "result"
        if kind == "result" and data.get("id") is None and data.get("person_id") != args.person_id:
            return
        events.put((kind, data))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect_async(client, mqtt_cfg)
    client.loop_start()
    deadline = time.monotonic() + args.timeout
    try:
        try:
            subscribed.get(timeout=max(0.1, min(10.0, deadline - time.monotonic())))
        except queue.Empty:
            try:
                kind, data = events.get_nowait()
                return fail(data["message"], ExitCode.FAILED)
            except queue.Empty:
                return fail(f"cannot reach the broker at {broker.host}:{broker.port}", ExitCode.TIMEOUT)
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            props.CorrelationData = command_id.encode()
        client.publish(topics.enroll, json.dumps(command), qos=1, properties=props).wait_for_publish(10)
        print(f"sent {command_id} to {topics.enroll}", file=sys.stderr)
        return _follow(events, deadline, command_id, args)
    finally:
        client.disconnect()
        client.loop_stop()


def _follow(events: queue.Queue[tuple[str, dict[str, Any]]], deadline: float, command_id: str, args: argparse.Namespace) -> int:
    """Print progress as it comes; print the result and return the exit code."""
    seen: set[str] = set()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return fail(f"no result for {command_id} within {args.timeout:g} s", ExitCode.TIMEOUT)
        try:
            kind, data = events.get(timeout=remaining)
        except queue.Empty:
            continue
        if kind == "error":
            return fail(data["message"], ExitCode.FAILED)
        if kind == "progress":
            line = f"[{data.get('state')}] {data.get('detail')}"
            if line not in seen:  # the same event may arrive on the device topic and our response topic
                print(line, file=sys.stderr)
                seen.add(line)
            continue
        print(json.dumps(data) if args.json else format_result(data))
        return ExitCode.OK if data.get("status") == "succeeded" else ExitCode.FAILED
