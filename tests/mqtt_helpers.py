"""A small synchronous paho subscriber for tests: collects messages per topic."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Listener:
    """Connects, subscribes to `topics`, and queues every (topic, payload bytes, properties)."""

    def __init__(
        self, host: str, port: int, topics: list[str], protocol: int = mqtt.MQTTv5, client_id: str = "", persistent: bool = False,
        username: str | None = None, password: str | None = None,
    ) -> None:
        """`persistent`: a session that outlives disconnects (needs a `client_id`), so QoS 1 messages queue at the broker."""
        self.messages: queue.Queue[tuple[str, bytes, Any, bool]] = queue.Queue()
        self._unread: list[tuple[str, bytes, Any, bool]] = []
        self.subscribed = threading.Event()  # set on SUBACK, cleared on disconnect
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                  clean_session=None if v5 else not persistent)
        self.client.reconnect_delay_set(1, 2)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, reasons, props: self.subscribed.set()
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.subscribed.clear()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, getattr(m, "properties", None), m.retain))
        if v5 and persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("listener did not connect and subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(topic, 1) for topic in self.topics])  # one SUBACK for all of them

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False, properties: Properties | None = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(10)

    def get(self, topic: str | None = None, timeout: float = 10.0) -> tuple[str, bytes, Any, bool]:
        """The oldest unread message on `topic` (any topic when None); messages on other topics stay unread."""
        deadline = time.monotonic() + timeout
        while True:
            while True:  # move what arrived into the unread list
                try:
                    self._unread.append(self.messages.get_nowait())
                except queue.Empty:
                    break
            for index, msg in enumerate(self._unread):
                if topic is None or msg[0] == topic:
                    return self._unread.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message on {topic or 'any topic'} within {timeout}s")
            try:
                self._unread.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                continue

    def received(self, topic: str) -> list[tuple[str, bytes, Any, bool]]:
        """What has arrived on `topic` and is still unread, without reading it."""
        while True:
            try:
                self._unread.append(self.messages.get_nowait())
            except queue.Empty:
                break
        return [msg for msg in self._unread if msg[0] == topic]

    def get_json(self, topic: str, timeout: float = 10.0, where: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            _, payload, _, _ = self.get(topic, max(0.01, deadline - time.monotonic()))
            data: dict[str, Any] = json.loads(payload)
            if where is None or where(data):
                return data

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
