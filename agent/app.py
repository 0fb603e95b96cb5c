"""Composition root of the daemon: build the parts from the config, start them in order, stop them in reverse.

Every other module takes its collaborators as arguments; only this one wires them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from agent.config import Config
from agent.errors import ExitCode
from agent.service.systemd import Notifier

log = logging.getLogger("faceagent")


class App:
    """The daemon: `start()` is the list of steps before READY; `stop()` undoes them in reverse."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.stop_requested = threading.Event()
        self.service: Any = None
        self.camera: Any = None
        self.client: Any = None
        self.store: Any = None

    def start(self) -> None:
        from agent.camera.camera import Camera, build_source
        from agent.errors import CameraUnavailable
        from agent.iai.client import IaiClient
        from agent.service.daemon import EnrollService
        from agent.service.enroller import Enroller
        from agent.service.store import JobStore
        from agent.vision.detector import detector_from_config

        cfg = self.config
        self.notifier.status("opening the job store")
        self.store = JobStore(cfg.state_dir / "jobs.sqlite3")
        self.notifier.status("loading the face detector")
        detector = detector_from_config(cfg.detector)
        self.notifier.status("checking the camera")
        self.camera = Camera(build_source(cfg.camera), cfg.camera.fps, cfg.camera.idle_close_s)
        try:
            self.camera.check()
        except CameraUnavailable as exc:
            log.error("%s (enrollments will fail with camera_unavailable until it works)", exc.message)
        self.client = IaiClient.from_config(cfg.cloud, cfg.secrets)
        password = cfg.secrets.mqtt_password.get_secret_value() if cfg.secrets.mqtt_password else None
        self.service = EnrollService(cfg, self.store, Enroller(cfg, detector, self.camera, self.client), self.camera, detector,
                                     self.client, password)
        self.notifier.status("connecting to the broker")
        self.service.start()
        self.service.link.first_attempt.wait(10.0)
        connected = self.service.link.connected.is_set()
        status = f"ready: {cfg.base_topic}, broker {'connected' if connected else 'not reachable yet'}"
        self.notifier.ready(status)
        log.info("faceagent %s", status)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; ping the watchdog only while the worker makes progress."""
        def request_stop(signum: int, frame: object) -> None:
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        watchdog = self.notifier.watchdog_s
        tick = min(1.0, watchdog / 4) if watchdog else 1.0
        while not self.stop_requested.wait(tick):
            if watchdog and self.service.alive and time.monotonic() - self.service.heartbeat < watchdog / 2:
                self.notifier.watchdog()
        self.stop()
        return ExitCode.OK

    def stop(self) -> None:
        self.notifier.stopping("finishing the current job")
        log.info("stopping: finishing or re-queuing the current job within %.0f s", self.config.enroll.shutdown_grace_s)
        if self.service is not None:
            self.service.stop(self.config.enroll.shutdown_grace_s)
        if self.camera is not None:
            self.camera.close()
        if self.client is not None:
            self.client.close()
        if self.store is not None:
            self.store.close()
        log.info("stopped")
