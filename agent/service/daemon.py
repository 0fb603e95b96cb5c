"""The enrollment service: four named threads around one MQTT connection and one job store.

| thread      | owns                                                         | module       |
|-------------|--------------------------------------------------------------|--------------|
| paho's loop | the socket; callbacks only enqueue                           | mqtt.py      |
| intake      | checking, storing and acknowledging commands; duplicates     | intake.py    |
| worker      | camera, detector, cloud writes (uploads; deletes: undo.py),  | worker.py    |
|             | lost-upload settlement, snapshots                            |              |
| outbox      | stored results -> QoS 1 publish -> deleted on PUBACK         | outbox.py    |
| telemetry   | retained state, periodic telemetry, pruning                  | telemetry.py |

They share only the SQLite store (a connection each), the IAI client (an HTTP session each: the worker
uploads while telemetry checks the account), thread-safe counters and state records, and events to wake
each other. No lock is held across network I/O.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.camera.camera import Camera
from agent.config import Config
from agent.iai.upload import Uploader
from agent.service.cloud_health import CloudHealth
from agent.service.enroller import Enroller
from agent.service.home_assistant import discovery_messages, status_topic
from agent.service.intake import Intake
from agent.service.mqtt import Incoming, MqttLink
from agent.service.outbox import Outbox
from agent.service.protocol import Topics
from agent.service.store import JobStore
from agent.service.telemetry import Counters, DeviceState, Telemetry
from agent.service.worker import Worker
from agent.vision.detector import FaceDetector

log = logging.getLogger(__name__)


def command_topics(config: Config) -> list[str]:
    """What the device subscribes to: its command topics, and Home Assistant's status and enroll topics when configured."""
    topics = Topics(config.base_topic)
    subscribed = [topics.enroll, topics.delete, topics.snapshot]
    if config.home_assistant.discovery:
        subscribed.append(status_topic(config))
    if config.home_assistant.allow_enroll and not config.commands.require_signature:
        subscribed.append(topics.ha_enroll)
    return subscribed


class EnrollService:
    def __init__(
        self, config: Config, store: JobStore, enroller: Enroller, uploader: Uploader | None, camera: Camera | None,
        detector: FaceDetector, password: str | None = None, describe: Callable[[], dict[str, Any]] | None = None,
        health: CloudHealth | None = None, device: DeviceState | None = None,
    ) -> None:
        self.config = config
        self.topics = topics = Topics(config.base_topic)
        self.counters = Counters()
        self.device = device or DeviceState()
        self.fatal_error: str | None = None
        self.failed = threading.Event()
        incoming: queue.Queue[Incoming] = queue.Queue()
        self.link = MqttLink(config.mqtt, config.mqtt.client_id or f"faceagent-{config.device_id}", password, topics.availability,
                             command_topics(config), incoming, self._acked, self._connected)
        self.outbox = Outbox(store, self.link, self.counters)

        def default_describe() -> dict[str, Any]:
            return {"camera": camera.health() if camera else None, "detector": detector.describe()}

        self.telemetry = Telemetry(
            config.device_id, self._publish, topics.state, topics.telemetry, config.mqtt.telemetry_interval_s,
            config.enroll.result_retention_days, store, self.counters, self.device, describe or default_describe,
            lambda: {"outbox_inflight": self.outbox.in_flight(), "mqtt_connects": self.link.connects,
                     "dropped_qos0": self.link.dropped_qos0},
            health.check if health else None, config.cloud.health_interval_s,
            (lambda: discovery_messages(config)) if config.home_assistant.discovery else None,
        )
        self.worker = Worker(config, store, enroller, uploader, camera, detector, self.link, self.counters, self.device,
                             self.outbox.wake, self.telemetry.wake, self._fail, health)
        self.intake = Intake(config, store, self.link, incoming, self.counters, self.worker.wake, self.outbox.wake,
                             self.worker.snapshots, self.telemetry.announce)
        self._threads: list[threading.Thread] = []

    def _publish(self, topic: str, payload: str, qos: int, retain: bool) -> object:
        return self.link.publish(topic, payload, qos=qos, retain=retain)

    def _acked(self, mid: int) -> None:
        self.outbox.ack_arrived(mid)  # the outbox is built after the link it needs

    def _connected(self) -> None:
        """From the network thread: the broker is (back) — republish the state (and discovery), send what waits."""
        self.telemetry.announce()
        self.outbox.wake()

    def _fail(self, why: str) -> None:
        """A fault the daemon cannot run on (a damaged store): stop, so systemd restarts it and start-up repairs it."""
        log.error("stopping: %s", why)
        self.fatal_error = why
        self.failed.set()

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.recover()
        self.intake.accepting.set()
        self.worker.accepting.set()
        self.link.start()
        for name, target in (("intake", self.intake.run), ("worker", self.worker.run), ("outbox", self.outbox.run),
                             ("telemetry", self.telemetry.run)):
            thread = threading.Thread(target=target, name=f"faceagent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float) -> None:
        """Take no new commands; let the running job finish within `grace_s` (else it is re-queued); publish `offline`.

        Commands that arrive meanwhile are not acknowledged and nothing is unsubscribed: the persistent
        session keeps them at the broker for the next start.
        """
        self.intake.accepting.clear()
        self.worker.accepting.clear()
        deadline = time.monotonic() + grace_s
        while self.worker.current_job and time.monotonic() < deadline:
            time.sleep(0.05)
        for part in (self.worker, self.intake, self.telemetry, self.outbox):
            part.stop()  # a capture still running is cancelled and re-queued
        for thread in self._threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()) if thread.name.endswith("worker") else 2.0)
        self.outbox.flush(timeout=2.0)  # only if its thread has ended (then this thread owns it); else it says so
        self.link.stop()

    @property
    def alive(self) -> bool:
        """Every thread runs and nothing fatal happened (progress is judged by `heartbeat`)."""
        return not self.failed.is_set() and all(t.is_alive() for t in self._threads)

    @property
    def heartbeat(self) -> float:
        return self.worker.heartbeat
