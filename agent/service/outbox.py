"""Thread `outbox`: stored results go out with QoS 1 and leave the store on their PUBACK — each exactly once.

It alone owns the map of message id -> outbox row. A row is handed to paho once per process; paho sends
it again after a reconnect by itself, so the outbox never re-publishes a row that is in flight (that is
how a result would arrive twice). PUBACKs arrive as message ids on `acks` (from the network thread) and
are processed here, after the id was recorded. After a restart, every row still stored is published again.
At a clean stop, `flush` takes over from the thread, but only once the thread has left `run`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from agent.service.mqtt import MqttLink
from agent.service.signals import Signals
from agent.service.store import JobStore, StoreError
from agent.service.telemetry import IDLE_WAKE_S, Count, Counters

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 100  # rows handed to paho and not yet acknowledged


class Outbox:
    def __init__(self, *, store: JobStore, link: MqttLink, acks: queue.Queue[int], counters: Counters, signals: Signals) -> None:
        self.store = store
        self.link = link
        self.acks = acks  # message ids of completed QoS 1 publications, from the network thread
        self.counters = counters
        self._in_flight: dict[int, int] = {}  # MQTT message id -> outbox seq (thread `outbox` only)
        self._last_seq = 0  # highest seq handed to paho (rows come back in seq order)
        self._wake = signals.outbox
        self.stopping = threading.Event()
        self.running = threading.Event()  # a thread is inside `run`: it alone may touch the map
        self._backoff = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def in_flight(self) -> int:
        return len(self._in_flight)

    def run(self) -> None:
        self.running.set()
        try:
            while not self.stopping.is_set():
                self._wake.wait(self._backoff or IDLE_WAKE_S)
                self._wake.clear()
                self.step()
        finally:
            self.running.clear()

    def step(self) -> None:
        """Record PUBACKs, then hand new rows to paho."""
        try:
            self._take_acks()
            if self.link.connected.is_set():
                self._send_new()
            self._backoff = 0.0
        except StoreError as exc:
            self._backoff = min(60.0, max(1.0, self._backoff * 2))
            log.error("outbox: %s (next try in %.0f s)", exc.message, self._backoff)

    def _take_acks(self) -> None:
        while True:
            try:
                mid = self.acks.get_nowait()
            except queue.Empty:
                return
            seq = self._in_flight.pop(mid, None)
            if seq is not None:  # other ids are state/snapshot publications, which are not stored
                self.store.delivered(seq)

    def _send_new(self) -> None:
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return
        for item in self.store.outbox(limit=room, after=self._last_seq):
            mid = self.link.publish(item.topic, item.payload, qos=1, correlation=item.correlation)
            self._last_seq = item.seq
            if mid is None:  # a topic paho refuses: it would fail forever, so it is dropped (and logged by the link)
                self.counters.inc(Count.UNPUBLISHABLE)
                self.store.delivered(item.seq)
                continue
            self._in_flight[mid] = item.seq

    def flush(self, timeout: float) -> bool:
        """On a clean stop, after `stop()`: wait (bounded) for the PUBACKs of what is in flight, so it need not be sent again.

        Only once the outbox thread has left `run` (two threads on the map could publish a row twice). While it has
        not (stuck on a busy store), nothing is done here and False returned: rows not yet deleted stay stored and
        are published again at the next start, as after a power cut.
        """
        if self.running.is_set():
            log.warning("outbox: its thread has not stopped (the store is busy?): not flushing; results not yet confirmed "
                        "by the broker stay stored and are published again at the next start")
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.link.connected.is_set():
            self.step()
            if not self._in_flight and not self.store.outbox(limit=1, after=self._last_seq):
                break
            self._wake.wait(max(0.0, min(0.2, deadline - time.monotonic())))
            self._wake.clear()
        return True
