"""The signals between the daemon's threads, by name: who wakes whom, and the one alarm that stops the daemon.

| signal            | raised by                                                   | wakes                          |
|-------------------|-------------------------------------------------------------|--------------------------------|
| `job_added`       | intake (a command stored, a snapshot asked)                 | worker                         |
| `result_stored`   | intake, worker (a result to publish); the link (a PUBACK, a | outbox                         |
|                   | reconnect)                                                  |                                |
| `state_changed`   | worker, cloud health (what `base/state` shows changed)      | telemetry (state now)          |
| `announce`        | the link (connected), intake (Home Assistant came online)   | telemetry (discovery + state)  |
| `fail(why)`       | worker (a damaged store it cannot run on)                   | `App.run`: the process exits 1 |
| `conflict(why)`   | the link (another process took this device id's session)    | `App.run`: the process exits 78|

Each thread waits on its own event here; raising a signal never blocks and never runs another thread's code.
"""

from __future__ import annotations

import logging
import threading

from agent.errors import ExitCode

log = logging.getLogger(__name__)


class Signals:
    def __init__(self) -> None:
        self.worker = threading.Event()
        self.outbox = threading.Event()
        self.telemetry = threading.Event()
        self.discovery_due = threading.Event()
        self.failed = threading.Event()
        self.fatal_error: str | None = None
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
        self.fatal_error = why
        self.failed.set()

    def conflict(self, why: str) -> None:
        """Another process uses this device's identity at the broker: stop and stay stopped.

        Exit 78 (systemd's RestartPreventExitStatus): restarting would take the session back and knock the other
        one off, and the two would take it from each other forever. `why` is kept for `App` to leave for doctor.
        """
        self.exit_code = ExitCode.CONFIG
        self.conflict_detail = why
        self.fail(why)
