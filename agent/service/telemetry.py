"""What the device says about itself: counters, the retained `base/state`, periodic `base/telemetry`, and pruning.

Thread `telemetry` owns the timers and publishes; any thread may bump a counter or change the state
(both are small locked records, never held across I/O) and then `wake()` it to republish the state.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from agent import __version__
from agent.service.result import iso_now
from agent.service.signals import Signals
from agent.service.store import JobStore, StoreError

log = logging.getLogger(__name__)

IDLE_WAKE_S = 5.0  # idle loops wake on events; this is only their safety net (an idle daemon uses ~0 % CPU)
PRUNE_EVERY_S = 3600.0


class Count(str, Enum):
    """The counters of `base/telemetry` (docs/mqtt-api.md lists them): each one counted is published, and only those."""

    RECEIVED = "received"  # enroll and delete commands arrived (not retained ones, not snapshot requests)
    SUCCEEDED = "succeeded"  # enroll results, by status
    PARTIAL = "partial"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"  # expired at arrival or in the queue
    DRY_RUN = "dry_run"
    DELETES = "deletes"  # delete commands finished, whatever their status
    REJECTED = "rejected"  # never run: invalid, an id used by the other kind
    QUEUE_FULL = "queue_full"
    REPLAYED = "replayed"  # a known id: its stored result sent again
    DUPLICATES_IN_PROGRESS = "duplicates_in_progress"  # a known id still running: acknowledged, not run twice
    IGNORED_RETAINED = "ignored_retained"
    UNAUTHENTICATED = "unauthenticated"
    STORE_ERRORS = "store_errors"
    INTERNAL_ERRORS = "internal_errors"  # a message that tripped a bug (answered, logged, acknowledged)
    UNPUBLISHABLE = "unpublishable"  # an outbox message whose topic the MQTT client refuses: dropped



class Counters:
    """Event counts and the latency window, shared by the threads that produce them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[Count] = Counter()
        self._latencies: deque[float] = deque(maxlen=200)

    def inc(self, name: Count, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def latency(self, ms: float) -> None:
        with self._lock:
            self._latencies.append(ms)

    def get(self, name: Count) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> tuple[dict[str, int], list[float]]:
        """Every counter by name (zeros included), and the latency window."""
        with self._lock:
            return {count.value: self._counts[count] for count in Count}, list(self._latencies)


class DeviceState:
    """The facts behind the retained `base/state` that change while running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fields: dict[str, Any] = {"last_result": None, "storage_error": None}

    def set(self, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._fields)


class Telemetry:
    """Thread `telemetry`: state on change, telemetry every interval, old results pruned hourly."""

    def __init__(
        self, *, device_id: str, publish: Callable[[str, str, int, bool], object], state_topic: str, telemetry_topic: str,
        interval_s: float, retention_days: int, store: JobStore, counters: Counters, device: DeviceState, signals: Signals,
        describe: Callable[[], dict[str, Any]], extra: Callable[[], dict[str, Any]],
        check_cloud: Callable[[], object] | None = None, check_interval_s: float = 300.0,
        discovery: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        self.device_id = device_id
        self._publish = publish
        self.state_topic = state_topic
        self.telemetry_topic = telemetry_topic
        self.interval_s = interval_s
        self.retention_days = retention_days
        self.store = store
        self.counters = counters
        self.device = device
        self._describe = describe  # version-independent facts: camera, detector
        self._extra = extra  # live figures: outbox in flight, mqtt connects
        self._check_cloud = check_cloud
        self.check_interval_s = check_interval_s
        self.started_at = iso_now()
        self._started = time.monotonic()
        self._discovery = discovery  # Home Assistant discovery configs (home_assistant.py), when configured
        self._announce = signals.discovery_due
        self._wake = signals.telemetry
        self.stopping = threading.Event()

    def wake(self) -> None:
        """Publish the state soon (it changed, or the broker connection came back)."""
        self._wake.set()

    def announce(self) -> None:
        """Publish the discovery configs (when configured) and the state soon: the broker or Home Assistant (re)started."""
        self._announce.set()
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def state(self) -> dict[str, Any]:
        try:
            depth = self.store.depth()
        except StoreError:
            depth = -1
        return {"version": __version__, "device_id": self.device_id, "started_at": self.started_at, **self._describe(),
                "queue_depth": depth, **self.device.snapshot()}

    def telemetry(self) -> dict[str, Any]:
        counts, latencies = self.counters.snapshot()
        try:
            depth = self.store.depth()
        except StoreError:
            depth = -1
        return {
            "device_id": self.device_id, "at": iso_now(), "uptime_s": round(time.monotonic() - self._started),
            "counters": counts,
            "latency_ms": {"last": latencies[-1] if latencies else None, "p50": statistics.median(latencies) if latencies else None,
                           "max": max(latencies) if latencies else None},
            "queue_depth": depth, **self._extra(), **self._describe(),
        }

    def run(self) -> None:
        next_telemetry = time.monotonic() + self.interval_s
        next_prune = time.monotonic()
        next_check = time.monotonic() if self._check_cloud is not None else math.inf  # no check: never due
        self._publish(self.state_topic, json.dumps(self.state()), 1, True)
        while not self.stopping.is_set():
            if self._check_cloud is not None and time.monotonic() >= next_check:
                self._check_cloud()  # publishes the state through wake() when the verdict changes
                next_check = time.monotonic() + self.check_interval_s
            woken = self._wake.wait(max(0.0, min(next_telemetry - time.monotonic(), next_check - time.monotonic(), IDLE_WAKE_S * 12)))
            if self.stopping.is_set():
                return
            if woken:
                self._wake.clear()
                if self._announce.is_set():
                    self._announce.clear()
                    for topic, config in self._discovery() if self._discovery else []:
                        self._publish(topic, config, 1, True)
                self._publish(self.state_topic, json.dumps(self.state()), 1, True)
            now = time.monotonic()
            if now >= next_telemetry:
                self._publish(self.telemetry_topic, json.dumps(self.telemetry()), 0, False)
                next_telemetry = now + self.interval_s
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self._prune()

    def _prune(self) -> None:
        try:
            pruned = self.store.prune(self.retention_days * 86400)
        except StoreError as exc:
            log.error("pruning old results: %s", exc.message)
            return
        if pruned:
            log.info("forgot %d result(s) older than %d days", pruned, self.retention_days)
