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

Each thread waits on its own event here; raising a signal never blocks and never runs another thread's code.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Signals:
    def __init__(self) -> None:
        self.worker = threading.Event()
        self.outbox = threading.Event()
        self.telemetry = threading.Event()
        self.discovery_due = threading.Event()
        self.failed = threading.Event()
        self.fatal_error: str | None = None

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
        self.fatal_error = why
        self.failed.set()
