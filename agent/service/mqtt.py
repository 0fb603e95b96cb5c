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
- Version negotiation: with `protocol: 5` a broker that refuses MQTT 5 before ever accepting it (NATS 2.9
  answers "Unsupported protocol version", RabbitMQ 3.10 closes the connection without a CONNACK) is asked
  again with 3.1.1 on the same client, once, and the switch is logged once (docs/brokers.md). A new client
  would lose the QoS 1 publications paho holds, so the one client is switched in place.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import ssl
import sys
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

VERSION_REFUSED = 132  # CONNACK "Unsupported Protocol Version" (paho maps 3.1.1's return code 1 to it too)
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with this client id
BAD_CREDENTIALS, NOT_AUTHORISED = 134, 135  # CONNACK reasons (3.1.1's return codes 4 and 5 arrive as these)
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


def use_mqtt311(client: mqtt.Client, cfg: MqttConfig) -> None:
    """Switch a paho client built for MQTT 5 to 3.1.1 before its next (re)connect, keeping what it holds.

    paho 2.x has no public setter: these are the three attributes its CONNECT is built from.
    """
    client._protocol = mqtt.MQTTv311
    client._clean_session = cfg.session_expiry_s == 0
    client._connect_properties = None


def refused_mqtt5(reason: Any, got_connack: bool) -> bool:
    """Whether an MQTT 5 CONNECT failed because the broker does not speak 5: it said so, or it hung up without a CONNACK."""
    return (not got_connack) or getattr(reason, "value", None) == VERSION_REFUSED


def refusal_fix(reason: Any) -> str:
    """What to do about a refused CONNECT, by its reason code (MQTT 5 codes; paho maps 3.1.1's return codes onto them)."""
    value = getattr(reason, "value", None)
    if value == VERSION_REFUSED:
        return 'the broker does not speak MQTT 5: set mqtt.protocol: "3.1.1" (docs/brokers.md)'
    if value == 133:  # Client Identifier not valid
        return "the broker refused the client id: set mqtt.client_id to one the broker accepts (unique per device)"
    if value in (134, 135, 140):  # bad user name or password, not authorized, bad authentication method
        return "check mqtt.username and the mqtt_password credential, and the broker's ACL for this client id (docs/brokers.md)"
    if value in (136, 137, 159):  # server unavailable, server busy, connection rate exceeded
        return "the broker is unavailable or busy: the device keeps retrying with backoff"
    return "check mqtt.url, mqtt.username, mqtt_password and the broker's log"
def failure_cause(url: str, exc: BaseException | None = None, reason: Any = None, username: str | None = None) -> str:
    """Why a connection attempt failed, in the words doctor uses: refused, DNS, TLS and its reason, credentials, ACL.

    mosquitto answers a wrong password with "not authorised" too: with a username, both name the credential.
    """
    if reason is not None:
        code = getattr(reason, "value", None)
        if code == BAD_CREDENTIALS:
            return f"bad credentials: the broker refused user {username} with the mqtt_password credential"
        if code == NOT_AUTHORISED and username:
            return (f"not authorised as user {username}: a wrong mqtt_password credential, or the broker does not "
                    "allow this user (its password file / ACL)")
        if code == NOT_AUTHORISED:
            return "not authorised: the broker does not accept anonymous clients: set mqtt.username and the mqtt_password credential"
        return f"the broker refused the connection: {reason}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({getattr(exc, 'reason', None) or exc})"
    if isinstance(exc, socket.gaierror):
        return f"DNS: the host {parse_broker_url(url).host} is not known ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: no broker listens there (is it running? are the host and port in mqtt.url right?)"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset (a TLS listener spoken to with mqtt://, or the other way round?)"
    if isinstance(exc, OSError):
        return f"cannot connect ({exc.strerror or exc})"
    return "unreachable"


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

    def requested_reply(self, data: dict[str, Any] | object) -> tuple[str | None, bytes | None]:
        """The reply address a command asks for: its payload's `reply_to` and `correlation` (signed, and they
        survive MQTT 3.1.1 and bridges), else MQTT 5's Response Topic and Correlation Data. Not yet checked."""
        fields = data if isinstance(data, dict) else {}
        topic = fields.get("reply_to") if isinstance(fields.get("reply_to"), str) else self.response_topic
        correlation = fields.get("correlation")
        return topic or None, correlation.encode("utf-8") if isinstance(correlation, str) else self.correlation


class MqttLink:
    """The daemon's connection. Owns nothing but paho: state lives in the threads it hands over to."""

    def __init__(
        self, *, cfg: MqttConfig, client_id: str, password: str | None, availability_topic: str, command_topics: list[str],
        incoming: queue.Queue[Incoming], acks: queue.Queue[int], signals: Signals, state_topic: str | None = None,
    ) -> None:
        """Commands go to `incoming` (for the intake), completed QoS 1 publications to `acks` (for the outbox).

        `state_topic`: the device's retained state, read back after every reconnect to see whether another
        process published as this device meanwhile (see `claim`).
        """
        self.cfg = cfg
        self.state_topic = state_topic
        self._identity: tuple[str, str] | None = None
        self.availability_topic = availability_topic
        self.command_topics = command_topics
        self._incoming = incoming
        self._acks = acks
        self._signals = signals
        self.connected = threading.Event()
        self.first_attempt = threading.Event()
        self.connects = 0
        self.dropped_qos0 = 0
        self.protocol = cfg.protocol  # what the connection speaks: "3.1.1" after negotiating down from "5"
        self.problem: str | None = None  # why the broker refused the last CONNECT, and the fix; None once connected
        self._got_connack = False
        self.client_id = client_id
        self._last_cause: str | None = None  # the last connection failure's cause: logged once until it changes
        self.client = build_client(cfg, client_id, cfg.username, password, manual_ack=True)
        self.client.will_set(availability_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_publish = self._handle_publish

    def claim(self, started_at: str, instance: str) -> None:
        """This process's identity as its retained state shows it (`started_at`, `instance`: a token per start).

        mosquitto 2.0 closes a taken-over connection without MQTT 5's "session taken over" (142): two processes
        with one client id just knock each other off about once a second. After a reconnect, a retained state
        with another instance token says who did it; the one that started first yields (both agree on that
        order), so exactly one stops and the other keeps the session.
        """
        self._identity = (started_at, instance)

    # --- paho callbacks (network thread): hand over only -------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._got_connack = True
        if reason.is_failure:
            if self._negotiate_down(reason, True):
                return
            self.problem = f"refused: {reason}; {refusal_fix(reason)}"  # for systemd's status line
            self.first_attempt.set()
            # told once per cause, not every 2 s: the cause (as doctor names it) and the fix
            self._failed(f"{failure_cause(self.cfg.url, reason=reason, username=self.cfg.username)}; {refusal_fix(reason)}")
            return
        self.connects += 1
        self.problem = None
        self._last_cause = None
        log.info("MQTT connected to %s with MQTT %s (session present: %s)", self.cfg.url, self.protocol,
                 getattr(flags, "session_present", False))
        if self.protocol == "5":
            options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe([(topic, options) for topic in self.command_topics])
        else:
            client.subscribe([(topic, 1) for topic in self.command_topics])
        if self.state_topic and self._identity:
            client.subscribe(self.state_topic, qos=0)  # its retained copy comes first: our own state is published later
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        self.connected.set()
        self.first_attempt.set()
        self._signals.announce()  # the broker may have lost the retained state and discovery configs
        self._signals.result_stored()  # results waiting for the broker go out now

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.first_attempt.set()
        self._failed(failure_cause(self.cfg.url, exc=sys.exc_info()[1]))  # paho calls this inside its `except OSError`

    def _failed(self, cause: str) -> None:
        """Log the cause of a failed attempt once, and again only when it changes: the journal shows why, not a storm."""
        if cause == self._last_cause:
            log.debug("MQTT broker %s: %s (still)", self.cfg.url, cause)
            return
        self._last_cause = cause
        log.warning("MQTT broker %s: %s; retrying with backoff up to %.0f s (said again when the cause changes)",
                    self.cfg.url, cause, self.cfg.reconnect_max_s)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        got_connack, self._got_connack = self._got_connack, False
        if not got_connack and self._negotiate_down(reason, False):
            return
        if not was_connected:
            if got_connack:  # the end of a refused attempt: its cause is logged already
                log.debug("MQTT connection to %s closed: %s", self.cfg.url, reason)
                return
            self.problem = f"closed the connection without answering CONNECT (MQTT {self.protocol}); is this an MQTT port? check mqtt.url"
            self.first_attempt.set()
            self._failed(self.problem)  # every retry would say the same: told once
            return
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            client.disconnect()  # no reconnect: taking the session back would knock the other one off, forever
            self._signals.conflict(self._conflict_text("another process"))
            return
        log.log(logging.WARNING if reason.is_failure else logging.INFO, "MQTT disconnected from %s: %s", self.cfg.url, reason)

    def _negotiate_down(self, reason: Any, got_connack: bool) -> bool:
        """Fall back to 3.1.1 when a broker that never accepted MQTT 5 refuses it; True when it did (logged once)."""
        if self.protocol != "5" or self.connects > 0 or not refused_mqtt5(reason, got_connack):
            return False
        how = f"it answered {reason}" if got_connack else "it closed the connection without answering"
        log.warning('MQTT broker %s does not accept MQTT 5 (%s): connecting with MQTT 3.1.1 instead. Commands carry '
                    'their reply address, correlation and expiry in the payload (docs/mqtt-api.md); set the broker\'s '
                    'message size limit, and mqtt.protocol: "3.1.1" to skip the MQTT 5 attempt (docs/brokers.md)', self.cfg.url, how)
        self.protocol = "3.1.1"
        use_mqtt311(self.client, self.cfg)
        return True

    def status(self) -> str:
        """For systemd's status line: connected (and how), refused (why, and the fix), or not reachable yet."""
        if self.connected.is_set():
            return f"broker connected (MQTT {self.protocol})"
        return f"broker {self.problem}" if self.problem else "broker not reachable yet (retrying with backoff)"

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.state_topic:
            self._check_identity(client, message)
            return
        if message.qos == 0 and self._incoming.qsize() >= QOS0_BACKLOG:
            self.dropped_qos0 += 1  # QoS 1 ones are bounded by Receive Maximum; QoS 0 has no flow control
            return
        props = getattr(message, "properties", None)
        self._incoming.put(Incoming(
            message.topic, bytes(message.payload), message.qos, message.mid, bool(message.retain),
            getattr(props, "ResponseTopic", None) or None, getattr(props, "CorrelationData", None),
            getattr(props, "MessageExpiryInterval", None), bool(message.dup),
        ))

    def _check_identity(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        """Another instance's state on this device's topic: two processes share this device id.

        Retained, at a reconnect: it took this client id's session (at the first connect the retained copy is the
        previous run's). Live, at any time: it runs as this device under another client id — nothing is taken
        over then, and both would run every command. Our own copies carry our instance token.
        """
        if self._identity is None or (message.retain and self.connects < 2):
            return
        try:
            data = json.loads(message.payload)
        except (ValueError, RecursionError):
            return
        if not isinstance(data, dict) or not data.get("instance") or data["instance"] == self._identity[1]:
            return
        other = (str(data.get("started_at")), str(data["instance"]))
        did = "took this device's session" if message.retain else "publishes as this device under another client id"
        if self._identity < other:
            client.disconnect()  # no reconnect: taking the session back would knock the other one off, forever
            self._signals.conflict(self._conflict_text(f"another faceagent (instance {other[1]}, started {other[0]})", did))
        else:
            log.warning("another faceagent (instance %s, started %s) %s on %s (this one: client id %s): it started before "
                        "this one (%s), so it stops and this one stays; give each device its own device_id", other[1], other[0],
                        did, self.cfg.url, self.client_id, self._identity[0])

    def _conflict_text(self, who: str, did: str = "took this device's session") -> str:
        return (f"{who} connected to {self.cfg.url} and {did} (this one: client id {self.client_id}): "
                "two devices (or two daemons) share one device_id (a cloned SD card?). Give each device its own "
                "device_id in agent.yaml (install.sh picks one from the Pi's serial or /etc/machine-id), then start it again")

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
        if correlation is None or self.protocol != "5":
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
