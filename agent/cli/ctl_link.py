"""An operator's connection to one device's topics, shared by the `faceagent ctl` verbs.

Subscribes first and publishes once the SUBACK is back, so no answer is missed. A command names a reply
topic private to this run (`faceagent-ctl/<client>/reply`) and its id as correlation value in its payload
(`reply_to`, `correlation`: signed with it, and carried by MQTT 3.1.1 and bridges), mirrored as MQTT 5 Response
Topic and Correlation Data; the device's own answer topics are watched for the id too. A broker that refuses
MQTT 5 is asked again with 3.1.1, as the device does. Commands are signed when the command key is configured.
Light on purpose: paho, pydantic and the standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.cli.common import fail
from agent.config import Config, parse_broker_url
from agent.errors import ExitCode
from agent.service.protocol import Topics

CONNECT_TIMEOUT_S = 10.0
PRESENCE_TIMEOUT_S = 5.0  # the broker answers our own probe within this; retained messages come before it


class CtlError(Exception):
    """The link could not be made; `code` is the exit code, the message is printed."""

    def __init__(self, message: str, code: int, refused_mqtt5: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.refused_mqtt5 = refused_mqtt5  # the broker does not speak MQTT 5: worth asking again with 3.1.1


@dataclass(frozen=True)
class Event:
    """A message on one of the watched topics, decoded: (topic, JSON object, whether it came on our response topic)."""

    topic: str
    data: dict[str, Any]
    private: bool


class DeviceLink:
    """Connected, subscribed paho client for one device; `events` receives every JSON object on the watched topics."""

    def __init__(self, args: argparse.Namespace, config: Config, watch: Callable[[Topics], list[tuple[str, int]]]) -> None:
        from agent.logs import SECRETS

        url = args.broker or config.mqtt.url
        try:
            broker = parse_broker_url(url)
        except ValueError as exc:
            raise CtlError(f"--broker {url!r}: {exc}", ExitCode.USAGE) from None
        SECRETS.add(broker.password)
        self.broker = broker
        self.device = args.device
        self.mqtt = config.mqtt.model_copy(update={"url": f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}",
                                                   "session_expiry_s": 0})
        self.topics = Topics(f"{self.mqtt.topic_prefix}/{args.device}")
        self.key = config.secrets.command_key.get_secret_value().encode() if config.secrets.command_key else None
        self.credentials = (broker.username or config.mqtt.username,
                            broker.password or (config.secrets.mqtt_password.get_secret_value() if config.secrets.mqtt_password else None))
        self.client_id = f"faceagent-ctl-{uuid.uuid4().hex[:8]}"
        self.v5 = self.mqtt.protocol == "5"
        self.response_topic = f"faceagent-ctl/{self.client_id}/reply"
        self.probe_topic = f"faceagent-ctl/{self.client_id}/probe"
        self.url = f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}"  # never its credentials
        self.presence: dict[str, bytes] = {}  # retained availability and state of the device, by topic
        self.probed = threading.Event()
        self.watch = [*watch(self.topics), (self.response_topic, 1), (self.topics.availability, 1), (self.topics.state, 1),
                      (self.probe_topic, 1)]
        self.last_id: str | None = None  # the id of the command sent: progress for others is not ours
        self.last_digest: str | None = None  # SHA-256 of the payload sent: how an answer without an id names it
        self.events: queue.Queue[Event | CtlError] = queue.Queue()
        self._subscribed: queue.Queue[bool] = queue.Queue()
        self.client = self._client()

    def _client(self) -> Any:
        from agent.service.mqtt import build_client

        client = build_client(self.mqtt, self.client_id, *self.credentials)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = lambda c, userdata, mid, reasons, props: self._subscribed.put(True)
        client.on_message = self._on_message
        self._got_connack = False
        return client

    # paho's network thread: hand over only
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        from agent.service.mqtt import refusal_fix, refused_mqtt5

        self._got_connack = True
        if reason.is_failure:
            self.events.put(CtlError(f"the broker {self.url} refused the connection: {reason} ({refusal_fix(reason)})", ExitCode.FAILED,
                                     self.v5 and refused_mqtt5(reason, True)))
            return
        client.subscribe(self.watch)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._got_connack:
            self.events.put(CtlError(f"the broker closed the connection without answering CONNECT (MQTT {self.mqtt.protocol}): "
                                     'is this an MQTT port? check --broker / mqtt.url', ExitCode.FAILED, self.v5))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.probe_topic:
            self.probed.set()
            return
        if message.topic in (self.topics.availability, self.topics.state):
            self.presence.setdefault(message.topic, bytes(message.payload))  # the retained copy comes first
            return
        try:
            data = json.loads(message.payload)
        except (ValueError, RecursionError):
            return
        if isinstance(data, dict):
            self.events.put(Event(message.topic, data, message.topic == self.response_topic))

    def open(self, deadline: float) -> None:
        """Connect and subscribe, or raise `CtlError` (refused or unreachable: exit 1, nothing was sent). A broker that refuses
        MQTT 5 is asked again with 3.1.1 (said on stderr, with the setting that skips the attempt)."""
        try:
            self._open(deadline)
        except CtlError as exc:
            if not exc.refused_mqtt5:
                raise
            self.close()
            print('the broker does not accept MQTT 5: using MQTT 3.1.1 (mqtt.protocol: "3.1.1" skips this attempt)', file=sys.stderr)
            self.mqtt = self.mqtt.model_copy(update={"protocol": "3.1.1"})
            self.v5 = False
            self.events, self._subscribed = queue.Queue(), queue.Queue()
            self.client = self._client()
            self._open(deadline)

    def _open(self, deadline: float) -> None:
        from agent.service.mqtt import connect_async

        connect_async(self.client, self.mqtt)
        self.client.loop_start()
        until = time.monotonic() + max(0.1, min(CONNECT_TIMEOUT_S, deadline - time.monotonic()))
        while time.monotonic() < until:
            try:
                self._subscribed.get(timeout=0.05)
                return
            except queue.Empty:
                pass
            try:
                early = self.events.get_nowait()
            except queue.Empty:
                continue
            if isinstance(early, CtlError):
                raise early
        # nothing was sent: a failure (1), not "no result yet" (3)
        raise CtlError(f"cannot reach the broker at {self.url}: nothing was sent", ExitCode.FAILED)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def signed(self, command: dict[str, Any], reply: bool = True) -> dict[str, Any]:
        """The command with its reply address (`reply_to`, `correlation`; not for snapshot requests, answered on the
        device's topic only), and `device_id`, `ts` and `sig` when this operator has the command key (docs/mqtt-api.md)."""
        from agent.service.protocol import sign_command

        if reply:
            command = {**command, "reply_to": self.response_topic, "correlation": str(command["id"])}
        if self.key is None:
            return command
        body = {**command, "device_id": self.device, "ts": int(time.time())}
        body["sig"] = sign_command(body, self.key)
        return body

    def send(self, topic: str, command: dict[str, Any]) -> None:
        """Publish one command (QoS 1); under MQTT 5 its reply address also as Response Topic and Correlation Data."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.last_id = str(command["id"])
        payload = json.dumps(command).encode()
        self.last_digest = hashlib.sha256(payload).hexdigest()
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = self.response_topic
            props.CorrelationData = str(command["id"]).encode()
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def next_event(self, deadline: float) -> Event | None:
        """The next message before `deadline` (None after it); a connection failure raises `CtlError`."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            item = self.events.get(timeout=remaining)
        except queue.Empty:
            return None
        if isinstance(item, CtlError):
            raise item
        return item


def require_presence(link: DeviceLink, args: argparse.Namespace) -> None:
    """Refuse at once a device that was never seen there or is offline (unless `--queue`).

    The device's availability is retained (`online`, or `offline` from its clean stop or its will). A probe we
    publish to ourselves after subscribing comes back after any retained message: without one by then, no device
    with this id ever connected to this broker. A command sent anyway would wait in no session, or run hours later.
    """
    link.client.publish(link.probe_topic, b"", qos=1)
    if not link.probed.wait(PRESENCE_TIMEOUT_S):
        raise CtlError(f"the broker at {link.url} did not echo our probe within {PRESENCE_TIMEOUT_S:g} s "
                       f"(does its ACL allow faceagent-ctl/#?)", ExitCode.FAILED)
    availability = link.presence.get(link.topics.availability)
    if availability == b"online":
        return
    if availability is None:
        why = (f"device {link.device} has never been seen on {link.url} (no retained {link.topics.availability}): "
               "check --device and the broker (--broker, or mqtt.url of the config)")
    else:
        why = f"device {link.device} is {availability.decode(errors='replace') or 'gone'} on {link.url}{_last_seen(link)}"
    if getattr(args, "queue", False):
        waits = ("it waits only in a session the device left at the broker: one never seen has none, and the broker "
                 "drops it" if availability is None else "it runs when the device comes back, unless it expires first")
        print(f"{why}; sent anyway (--queue): {waits}", file=sys.stderr)
        return
    raise CtlError(f"{why}; nothing was sent (--queue sends it anyway, to wait in the device's session)", ExitCode.FAILED)


def _last_seen(link: DeviceLink) -> str:
    """When the offline device last started, from its retained state (MQTT keeps no time for the `offline` itself)."""
    try:
        state = json.loads(link.presence.get(link.topics.state) or b"null")
    except (ValueError, RecursionError):
        return ""
    if not isinstance(state, dict) or not state.get("started_at"):
        return ""
    return f" (its retained state: started {state['started_at']}, version {state.get('version')})"


def broker_source(args: argparse.Namespace) -> str:
    """Where the broker address came from, said with it: an operator must know which broker was asked."""
    import os

    from agent.config import DEFAULT_CONFIG_PATH

    if args.broker:
        return "from --broker"
    path = args.config or os.environ.get("FACEAGENT_CONFIG") or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    return f"mqtt.url of {path}" if path else "the default: no --broker and no config file"


@contextmanager
def device_link(args: argparse.Namespace, config: Config, watch: Callable[[Topics], list[tuple[str, int]]],
                deadline: float) -> Iterator[DeviceLink]:
    """A `DeviceLink` subscribed to `watch(topics)` of the device (and our response topic), closed afterwards."""
    link = DeviceLink(args, config, watch)
    try:
        print(f"broker {link.url} ({broker_source(args)})", file=sys.stderr)  # named first, whatever happens next
        link.open(deadline)
        require_presence(link, args)
        yield link
    finally:
        link.close()


def run_verb(body: Any) -> int:
    """Run a ctl verb's body, turning a `CtlError` into its message and exit code."""
    try:
        return int(body())
    except CtlError as exc:
        return fail(exc.message, exc.code)


def new_command_id(args: argparse.Namespace) -> str:
    return getattr(args, "command_id", None) or uuid.uuid4().hex
