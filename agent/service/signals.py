"""The signals between the daemon's threads, by name: who wakes whom, and the one alarm that stops the daemon.

| signal            | raised by                                                   | wakes                          |
|-------------------|-------------------------------------------------------------|--------------------------------|
| `job_added`       | intake (a command stored, a snapshot asked)                 | worker                         |
| `result_stored`   | intake, worker (a result to publish); the link (a PUBACK, a | outbox                         |
|                   | reconnect)                                                  |                                |
| `state_changed`   | worker, cloud health (what `base/state` shows changed)      | telemetry (state now)          |
| `announce`        | the link (connected), intake (Home Assistant came online)   | telemetry (discovery + state)  |
| `fail(why)`       | worker (a damaged store it cannot run on); the supervisor   | `App.run`: the process exits 1 |
|                   | of every thread (an unexpected error ended it: daemon.py)   |                                |
| `conflict(why)`   | the link (another process took this device id's session)    | `App.run`: the process exits 78|

Each thread waits on its own event here; raising a signal never blocks and never runs another thread's code.
Waiting on it also tells `progress` the thread is idle (the intake's queue does the same): `App.run` stops feeding
systemd's watchdog when a thread stays out of its wait too long.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from agent.errors import ExitCode

log = logging.getLogger(__name__)
T = TypeVar("T")


class Progress:
    """Since when each thread has been busy (out of its wait): a thread that waits is idle, one that has not come
    back to its wait for long is stuck. `App.run` feeds systemd's watchdog only while none is."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._busy_since: dict[str, float | None] = {}

    def waiting(self, name: str) -> None:
        self._busy_since[name] = None

    def working(self, name: str) -> None:
        self._busy_since[name] = self._clock()

    def stuck(self, limit_s: float) -> list[str]:
        now = self._clock()
        return [name for name, since in list(self._busy_since.items()) if since is not None and now - since > limit_s]


class _Wake(threading.Event):
    """A thread's own event: waiting on it tells `Progress` the thread is idle, returning that it works again."""

    def __init__(self, name: str, progress: Progress) -> None:
        super().__init__()
        self._name, self._progress = name, progress

    def wait(self, timeout: float | None = None) -> bool:
        self._progress.waiting(self._name)
        try:
            return super().wait(timeout)
        finally:
            self._progress.working(self._name)


class WatchedQueue(queue.Queue[T]):
    """The intake's queue: waiting in `get` is idle, as for `_Wake`."""

    def __init__(self, name: str, progress: Progress) -> None:
        super().__init__()
        self._name, self._progress = name, progress

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        self._progress.waiting(self._name)
        try:
            return super().get(block, timeout)
        finally:
            self._progress.working(self._name)


class Signals:
    def __init__(self) -> None:
        self.progress = Progress()
        self.worker = threading.Event()  # the worker's progress is its heartbeat (a job may run long)
        self.outbox = _Wake("outbox", self.progress)
        self.telemetry = _Wake("telemetry", self.progress)
        self.discovery_due = threading.Event()
        self.failed = threading.Event()
        self.exit_code = ExitCode.FAILED  # what `App.run` returns once `failed` is set
        self.conflict_detail: str | None = None

    def job_added(self) -> None:
        self.worker.set()

    def result_stored(self) -> None:
        self.outbox.set()

    def state_changed(self) -> None:
        self.telemetry.set()

    def announce(self) -> None:
        """Publish the discovery configs (when configured) and the state: the broker or Home Assistant (re)started."""
        self.discovery_due.set()
        self.telemetry.set()

    def fail(self, why: str) -> None:
        """A fault the daemon cannot run on (a damaged store): stop, so systemd restarts it and start-up repairs it."""
        log.error("stopping: %s", why)
        self.failed.set()

    def conflict(self, why: str) -> None:
        """Another process uses this device's identity at the broker: stop and stay stopped.

        Exit 78 (systemd's RestartPreventExitStatus): restarting would take the session back and knock the other
        one off, and the two would take it from each other forever. `why` is kept for `App` to leave for doctor.
        """
        self.exit_code = ExitCode.CONFIG
        self.conflict_detail = why
        self.fail(why)
