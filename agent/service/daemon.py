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
uploads while telemetry checks the account), thread-safe counters and state records, and the named wake-ups of
`Signals` (signals.py). No lock is held across network I/O. docs/architecture.md has the whole picture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.config import Config
from agent.service.home_assistant import status_topic
from agent.service.intake import Intake
from agent.service.mqtt import MqttLink
from agent.service.outbox import Outbox
from agent.service.protocol import Topics
from agent.service.signals import Signals
from agent.service.telemetry import Telemetry
from agent.service.worker import Worker

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
    """The threads' lifecycle: the parts are built and wired by the composition root (agent/app.py)."""

    def __init__(self, *, link: MqttLink, intake: Intake, worker: Worker, outbox: Outbox, telemetry: Telemetry,
                 signals: Signals) -> None:
        self.link = link
        self.intake = intake
        self.worker = worker
        self.outbox = outbox
        self.telemetry = telemetry
        self.signals = signals
        self._threads: dict[str, threading.Thread] = {}

    @property
    def failed(self) -> threading.Event:
        return self.signals.failed

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.recover()
        self.intake.accepting.set()
        self.worker.accepting.set()
        self.link.start()
        for name, target in (("intake", self.intake.run), ("worker", self.worker.run), ("outbox", self.outbox.run),
                             ("telemetry", self.telemetry.run)):
            thread = threading.Thread(target=self._supervised(name, target), name=f"faceagent-{name}", daemon=True)
            thread.start()
            self._threads[name] = thread

    def _supervised(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """`target` whose unexpected exception stops the daemon: logged (redacted), `fail` raised, so `App.run` stops,
        publishes `offline` and exits 1 for systemd to restart it. A thread that died quietly would leave a device
        that looks online, acknowledges commands and answers none."""

        def run() -> None:
            try:
                target()
            except Exception as exc:
                log.critical("the %s thread stopped on an unexpected error", name, exc_info=True)
                self.signals.fail(f"the {name} thread stopped on an unexpected error ({exc.__class__.__name__})")

        return run

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
        for name, thread in self._threads.items():
            thread.join(timeout=max(1.0, deadline - time.monotonic()) if name == "worker" else 2.0)
        self.outbox.flush(timeout=2.0)  # only if its thread has ended (then this thread owns it); else it says so
        self.link.stop()

    @property
    def alive(self) -> bool:
        """Every thread runs and nothing fatal happened (progress is judged by `heartbeat`)."""
        return not self.failed.is_set() and all(t.is_alive() for t in self._threads.values())

    @property
    def heartbeat(self) -> float:
        return self.worker.heartbeat
