"""The device's MQTT connection (paho-mqtt 2.x, VERSION2 callbacks).

- Will `offline` (retained, QoS 1) set before connecting; `online` published on every connect.
- Subscriptions made in `on_connect`, so they come back after every reconnect.
- Persistent session (MQTT 5 Session Expiry + clean_start=False, or clean_session=False in 3.1.1), so
  commands sent during a short outage still arrive. Manual acks: a command is acknowledged only after
  the daemon has stored it.
- Callbacks only hand over to queues: no blocking work on the network thread.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.service.protocol import Topics
from agent.service.store import Outgoing

log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of mqtt://host[:1883] or mqtts://host[:8883]."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls


def build_client(cfg: MqttConfig, client_id: str, password: str | None, manual_ack: bool = False) -> mqtt.Client:
    """A configured, not yet connected paho client (also used by `faceagent ctl`)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )
    client.reconnect_delay_set(max(1, int(cfg.reconnect_min_s)), max(1, int(cfg.reconnect_max_s)))
    client.max_inflight_messages_set(20)
    if cfg.username:
        client.username_pw_set(cfg.username, password)
    _, _, tls = parse_url(cfg.url)
    if tls:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(False)
    return client


def connect_async(client: mqtt.Client, cfg: MqttConfig) -> None:
    host, port, _ = parse_url(cfg.url)
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        client.connect_async(host, port, cfg.keepalive_s, clean_start=cfg.session_expiry_s == 0, properties=props)
    else:
        client.connect_async(host, port, cfg.keepalive_s)


class MqttLink:
    """The daemon's connection: commands in (handed to `on_message`), results out (tracked to PUBACK)."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        password: str | None,
        topics: Topics,
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_connected: Callable[[], None],
        on_delivered: Callable[[int], None],
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_delivered = on_delivered
        self._inflight: dict[int, int] = {}  # mid -> outbox seq
        self._publishing: set[int] = set()  # seqs being handed to paho right now
        self._early_acks: set[int] = set()  # PUBACKs that beat the recording of their mid
        # Never held while calling into paho: paho calls on_publish with its own mutex held (deadlock otherwise).
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.first_attempt = threading.Event()
        self.connects = 0
        self.client = build_client(cfg, cfg.client_id or f"faceagent-{device_id}", password, manual_ack=True)
        self.client.will_set(topics.availability, "offline", qos=1, retain=True)
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_publish = self._handle_publish

    # --- paho callbacks (network thread): hand over only ---------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.first_attempt.set()
            log.warning("MQTT connect to %s refused: %s", self.cfg.url, reason)
            return
        self.connects += 1
        session = getattr(flags, "session_present", False)
        log.info("MQTT connected to %s (session present: %s)", self.cfg.url, session)
        with self._lock:
            self._inflight.clear()  # anything unacknowledged is published again from the outbox
            self._early_acks.clear()
        client.subscribe([(self.topics.enroll, 1), (self.topics.snapshot, 1)])
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        self.connected.set()
        self.first_attempt.set()
        self._on_connected()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.first_attempt.set()
        log.warning("MQTT broker %s unreachable; retrying with backoff up to %.0f s", self.cfg.url, self.cfg.reconnect_max_s)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        log.log(logging.WARNING if reason.is_failure else logging.INFO, "MQTT disconnected from %s: %s", self.cfg.url, reason)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message(message)

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None and self._publishing:
                self._early_acks.add(mid)
        if seq is not None:
            self._on_delivered(seq)

    # --- used by the daemon's threads ------------------------------------------------------------

    def start(self) -> None:
        connect_async(self.client, self.cfg)
        self.client.loop_start()

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """PUBACK a command now that it is stored."""
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, correlation: bytes | None = None) -> int | None:
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=self._props(correlation))
        return info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    def publish_outgoing(self, item: Outgoing) -> bool:
        """Publish an outbox row with QoS 1; `on_delivered(seq)` follows its PUBACK."""
        with self._lock:
            if item.seq in self._publishing or item.seq in self._inflight.values() or not self.connected.is_set():
                return False
            self._publishing.add(item.seq)
        try:
            info = self.client.publish(item.topic, item.payload, qos=1, retain=False, properties=self._props(item.correlation))
        except Exception:
            with self._lock:
                self._publishing.discard(item.seq)
            raise
        with self._lock:
            self._publishing.discard(item.seq)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False
            acked = info.mid in self._early_acks
            self._early_acks.discard(info.mid)
            if not acked:
                self._inflight[info.mid] = item.seq
        if acked:
            self._on_delivered(item.seq)
        return True

    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _props(self, correlation: bytes | None) -> Properties | None:
        if correlation is None or self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        return props

    def stop(self, timeout: float = 5.0) -> None:
        """Publish `offline` (retained), disconnect cleanly, stop the network thread."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
