"""The device's MQTT connection (paho-mqtt 2.x, VERSION2 callbacks): callbacks only hand over.

- Will `offline` (retained, QoS 1) set before connecting; `online` published and subscriptions made on
  every connect, so they come back after a reconnect.
- Persistent session (MQTT 5 Session Expiry + clean_start=False, or clean_session=False in 3.1.1): commands
  sent while the device is away or restarting still arrive. Manual acks: a command is acknowledged only
  once stored; one that is not acknowledged is delivered again in the next session.
- MQTT 5: Maximum Packet Size (the broker never forwards a bigger message) and Receive Maximum (at most
  that many unacknowledged commands in flight) bound memory whatever is published; commands are
  subscribed with Retain As Published (a retained command is seen as such, and ignored) and retain
  handling 2 (retained commands are never sent on subscribe).
- paho keeps unacknowledged QoS 1 publications and sends them again after a reconnect itself, so the
  outbox publishes each stored message once per process and waits for its PUBACK.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import MqttConfig, parse_broker_url
from agent.errors import ConfigError
from agent.service.protocol import MAX_PACKET_BYTES
from agent.service.signals import Signals

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 10  # unacknowledged QoS 1 commands the broker may send at once
QOS0_BACKLOG = 64  # QoS 0 commands beyond this many waiting are dropped (no flow control exists for them)


def build_client(cfg: MqttConfig, client_id: str, username: str | None, password: str | None, manual_ack: bool = False) -> mqtt.Client:
    """A configured, not yet connected paho client (also used by `faceagent ctl`)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else cfg.session_expiry_s == 0,
        manual_ack=manual_ack,
    )
    client.reconnect_delay_set(max(1, int(cfg.reconnect_min_s)), max(1, int(cfg.reconnect_max_s)))
    client.max_inflight_messages_set(20)
    if username:
        client.username_pw_set(username, password)
    if parse_broker_url(cfg.url).tls:
        try:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as exc:  # a file that is not a certificate or key, a key that does not fit
            raise ConfigError([("mqtt.tls", f"the certificate files cannot be used: {exc}")]) from None
        client.tls_insecure_set(False)
    return client


def connect_async(client: mqtt.Client, cfg: MqttConfig, receive_maximum: int | None = None) -> None:
    broker = parse_broker_url(cfg.url)
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.MaximumPacketSize = MAX_PACKET_BYTES
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        client.connect_async(broker.host, broker.port, cfg.keepalive_s, clean_start=cfg.session_expiry_s == 0, properties=props)
    else:
        client.connect_async(broker.host, broker.port, cfg.keepalive_s)


@dataclass(frozen=True)
class Incoming:
    """A message handed from the network thread to the intake."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    response_topic: str | None
    correlation: bytes | None
    expiry_s: int | None
    dup: bool = False  # the broker's redelivery of a message it sent before (a lost PUBACK)


class MqttLink:
    """The daemon's connection. Owns nothing but paho: state lives in the threads it hands over to."""

    def __init__(
        self, *, cfg: MqttConfig, client_id: str, password: str | None, availability_topic: str, command_topics: list[str],
        incoming: queue.Queue[Incoming], acks: queue.Queue[int], signals: Signals,
    ) -> None:
        """Commands go to `incoming` (for the intake), completed QoS 1 publications to `acks` (for the outbox)."""
        self.cfg = cfg
        self.availability_topic = availability_topic
        self.command_topics = command_topics
        self._incoming = incoming
        self._acks = acks
        self._signals = signals
        self.connected = threading.Event()
        self.first_attempt = threading.Event()
        self.connects = 0
        self.dropped_qos0 = 0
        self.client = build_client(cfg, client_id, cfg.username, password, manual_ack=True)
        self.client.will_set(availability_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_publish = self._handle_publish

    # --- paho callbacks (network thread): hand over only -------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.first_attempt.set()
            log.warning("MQTT connect to %s refused: %s", self.cfg.url, reason)
            return
        self.connects += 1
        log.info("MQTT connected to %s (session present: %s)", self.cfg.url, getattr(flags, "session_present", False))
        if self.cfg.protocol == "5":
            options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe([(topic, options) for topic in self.command_topics])
        else:
            client.subscribe([(topic, 1) for topic in self.command_topics])
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        self.connected.set()
        self.first_attempt.set()
        self._signals.announce()  # the broker may have lost the retained state and discovery configs
        self._signals.result_stored()  # results waiting for the broker go out now

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.first_attempt.set()
        log.warning("MQTT broker %s unreachable; retrying with backoff up to %.0f s", self.cfg.url, self.cfg.reconnect_max_s)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        log.log(logging.WARNING if reason.is_failure else logging.INFO, "MQTT disconnected from %s: %s", self.cfg.url, reason)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.qos == 0 and self._incoming.qsize() >= QOS0_BACKLOG:
            self.dropped_qos0 += 1  # QoS 1 ones are bounded by Receive Maximum; QoS 0 has no flow control
            return
        props = getattr(message, "properties", None)
        self._incoming.put(Incoming(
            message.topic, bytes(message.payload), message.qos, message.mid, bool(message.retain),
            getattr(props, "ResponseTopic", None) or None, getattr(props, "CorrelationData", None),
            getattr(props, "MessageExpiryInterval", None), bool(message.dup),
        ))

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acks.put(mid)
        self._signals.result_stored()

    # --- used by the daemon's threads (paho's publish and ack are thread-safe) -----------------------

    def start(self) -> None:
        connect_async(self.client, self.cfg, RECEIVE_MAXIMUM)
        self.client.loop_start()

    def ack(self, message: Incoming) -> None:
        """PUBACK a command now that it is stored (or deliberately dropped)."""
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                correlation: bytes | None = None) -> int | None:
        """Publish; the message id of a QoS 1 publication paho now owns (sent again after a reconnect), or None.

        QoS 0 messages are dropped while disconnected. Never raises for a bad topic: it is logged.
        """
        if qos == 0 and not self.connected.is_set():
            return None
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=self._props(correlation))
        except ValueError as exc:
            log.error("cannot publish to %r: %s", topic[:120], exc)
            return None
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) or (qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS):
            return None
        return info.mid

    def _props(self, correlation: bytes | None) -> Properties | None:
        if correlation is None or self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        return props

    def stop(self, timeout: float = 5.0) -> None:
        """Publish `offline` (retained) and disconnect; subscriptions stay in the persistent session."""
        if self.connected.is_set():
            info = self.client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
