"""Composition root of the daemon: build the parts from the config, start them in order, stop them in reverse.

Every other module takes its collaborators as arguments; only this one wires them. Its own inputs are
arguments too: the config (with its secrets) and where those secrets are read again (`secrets_from`); nothing
is parked in the process environment for a later reader.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from agent.camera.camera import Camera, build_source
from agent.clock import SYSTEM_CLOCK, Clock
from agent.config import Config, read_secrets
from agent.errors import CameraUnavailable, ConfigError, ExitCode, ModelError
from agent.iai.client import IaiClient
from agent.iai.reconcile import Reconciler
from agent.iai.transport import Credentials
from agent.iai.upload import Journal, Uploader
from agent.logs import SECRETS
from agent.service.cloud_health import CloudHealth
from agent.service.daemon import EnrollService, command_topics
from agent.service.enroller import Enroller
from agent.service.home_assistant import discovery_messages
from agent.service.intake import Intake
from agent.service.mqtt import Incoming, MqttLink
from agent.service.outbox import Outbox
from agent.service.protocol import Topics
from agent.service.signals import Signals, WatchedQueue
from agent.service.state_lock import StateLock, clear_conflict_note, leave_conflict_note
from agent.service.store import JobStore
from agent.service.systemd import Notifier
from agent.service.telemetry import Counters, DeviceState, Telemetry
from agent.service.undo import Undo
from agent.service.worker import Worker
from agent.vision.detector import FaceDetector, detector_from_config

log = logging.getLogger("faceagent")

STUCK_S = 60.0  # beyond its longest honest step (plus cloud.deadline_s), a thread out of its wait is stuck


def preflight(config: Config, model: bool = True) -> list[tuple[str, str]]:
    """Problems `run` would stop on (exit 78) that the config schema cannot see: the state directory, a custom model.

    Shared by `check-config`, so a device that passes it starts. A state directory that does not exist yet is
    fine (systemd's StateDirectory= creates it). `model=False` leaves the model out: `run` loads it once, in `start()`.
    """
    problems: list[tuple[str, str]] = []
    folder = config.state_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        problems.append(("state_dir", f"{config.state_dir}: {folder} is not a directory"))
    elif folder == config.state_dir and not os.access(folder, os.W_OK | os.X_OK):
        problems.append(("state_dir", f"{folder} is not writable by this user"))
    if model and config.detector.model_path is not None:
        try:
            detector_from_config(config.detector)
        except ModelError as exc:
            problems.append(("detector.model_path", exc.message))
    return problems


def credentials_reader(secrets_from: Mapping[str, str]) -> Callable[[], Credentials]:
    """Reads the cloud keys as their source holds them now (temporary credentials are renewed there).

    `secrets_from` is the environment the config's secrets were resolved in (`$CREDENTIALS_DIRECTORY` in it
    names the folder), so the keys are read again from where they were first found.
    """

    def read() -> Credentials:
        found, problems = read_secrets(secrets_from)
        if problems or "secret_id" not in found or "secret_key" not in found:
            raise ConfigError(problems or [("secrets.secret_id", "not set")])
        return Credentials(found["secret_id"], found["secret_key"], found.get("session_token"))

    return read


def build_cloud(config: Config, journal: Journal, secrets_from: Mapping[str, str], *,
                clock: Clock = SYSTEM_CLOCK) -> tuple[IaiClient, Uploader]:
    """The IAI client and the exactly-once uploader on top of it, recording every attempt in `journal` before it is sent.

    `clock`: the device clock signs the requests; the settle window runs on the monotonic clock.
    """
    client = IaiClient.from_config(config.cloud, config.secrets, credentials_reader(secrets_from), clock=clock.wall,
                                   monotonic=clock.monotonic, sleep=clock.sleep)
    window = config.cloud.read_timeout_s + config.cloud.settle_s
    reconciler = Reconciler(client, window_s=window, clock=clock.monotonic, sleep=clock.sleep)
    return client, Uploader(client, reconciler, journal=journal)


def build_service(
    config: Config, *, store: JobStore, detector: FaceDetector, camera: Camera | None, client: IaiClient | None,
    uploader: Uploader | None, password: str | None, device: DeviceState | None = None, cloud_health: bool = True,
) -> EnrollService:
    """Every part of the running service, wired by name: the link, the four threads, the cloud's health.

    `cloud_health=False` leaves out the account check (a simulated fleet sharing one rate limit).
    """
    signals = Signals()
    device = device or DeviceState()
    counters = Counters()
    topics = Topics(config.base_topic)
    incoming: queue.Queue[Incoming] = WatchedQueue("intake", signals.progress)
    acks: queue.Queue[int] = queue.Queue()
    health = CloudHealth(client=client, device=device, changed=signals.state_changed) if client and cloud_health else None
    enroller = Enroller(config, detector=detector, camera=camera, client=client, uploader=uploader,
                        on_cloud_error=health.noticed if health else lambda exc: None)
    link = MqttLink(cfg=config.mqtt, client_id=config.mqtt.client_id or f"faceagent-{config.device_id}", password=password,
                    availability_topic=topics.availability, command_topics=command_topics(config), incoming=incoming,
                    acks=acks, signals=signals, state_topic=topics.state)
    outbox = Outbox(store=store, link=link, acks=acks, counters=counters, signals=signals)

    def describe() -> dict[str, Any]:
        return {"camera": camera.health() if camera else None, "detector": detector.describe()}

    telemetry = Telemetry(
        device_id=config.device_id, publish=link.publish, state_topic=topics.state, telemetry_topic=topics.telemetry,
        interval_s=config.mqtt.telemetry_interval_s, retention_days=config.enroll.result_retention_days, store=store,
        counters=counters, device=device, signals=signals, describe=describe,
        extra=lambda: {"outbox_inflight": outbox.in_flight(), "mqtt_connects": link.connects, "dropped_qos0": link.dropped_qos0},
        check_cloud=health.check if health else None, check_interval_s=config.cloud.health_interval_s,
        discovery=(lambda: discovery_messages(config)) if config.home_assistant.discovery else None,
    )
    instance = uuid.uuid4().hex[:12]  # this start's token in the retained state: how a second one with this id is told apart
    device.set(instance=instance)
    link.claim(telemetry.started_at, instance)
    worker = Worker(config=config, store=store, enroller=enroller, uploader=uploader, undo=Undo(config, client=client, store=store),
                    camera=camera, detector=detector, link=link, counters=counters, device=device, signals=signals,
                    health=health)
    intake = Intake(config=config, store=store, link=link, incoming=incoming, counters=counters, snapshots=worker.snapshots,
                    signals=signals)
    return EnrollService(link=link, intake=intake, worker=worker, outbox=outbox, telemetry=telemetry, signals=signals)


class App:
    """The daemon: `start()` is the list of steps before READY; `stop()` undoes them in reverse.

    `secrets_from`: the environment `config`'s secrets were resolved in, where temporary keys are read again.
    Every secret in `config` is registered with the log redaction here, however the App was built.
    """

    def __init__(self, config: Config, notifier: Notifier | None = None, *, secrets_from: Mapping[str, str],
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.secrets_from = secrets_from
        self.clock = clock
        SECRETS.add(*config.secrets.revealed())
        self.notifier = notifier or Notifier()
        self.stop_requested = threading.Event()
        self.service: EnrollService | None = None
        self.camera: Camera | None = None
        self.client: IaiClient | None = None
        self.store: JobStore | None = None
        self.state_lock = StateLock(config.state_dir)

    def start(self) -> None:
        cfg = self.config
        os.umask(0o077)  # state files name people; the unit sets the same, this covers running it by hand
        self.state_lock.acquire()  # before the store is opened: a second process must not recover this one's jobs
        clear_conflict_note(cfg.state_dir)  # a new start is a new try with this device id
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
        self.client, uploader = build_cloud(cfg, self.store, self.secrets_from, clock=self.clock)  # the store: the journal
        password = cfg.secrets.mqtt_password.get_secret_value() if cfg.secrets.mqtt_password else None
        device = DeviceState()
        if self.store.recovered_from is not None:
            device.set(store_recovered_from=str(self.store.recovered_from))
        self.service = build_service(cfg, store=self.store, detector=detector, camera=self.camera, client=self.client,
                                     uploader=uploader, password=password, device=device)
        self.notifier.status("connecting to the broker")
        self.service.start()
        self.service.link.first_attempt.wait(10.0)
        status = f"ready: {cfg.base_topic}, {self.service.link.status()}"
        self.notifier.ready(status)
        log.info("faceagent %s", status)

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT ask `run()` to stop; installed before `start()` so a stop during start-up is a clean one."""

        def request_stop(signum: int, frame: object) -> None:
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit 0) or a fault it cannot run on (exit 1); ping the watchdog while every thread runs,
        the worker beats and no other thread is stuck out of its wait."""
        assert self.service is not None
        service = self.service
        watchdog = self.notifier.watchdog_s
        tick = min(1.0, watchdog / 4) if watchdog else 1.0
        reported = False
        stuck_after = STUCK_S + self.config.cloud.deadline_s  # a health check may take one call's whole budget
        while not self.stop_requested.wait(tick) and not service.failed.is_set():
            stuck = service.signals.progress.stuck(stuck_after)
            if stuck and not reported:
                log.error("thread(s) %s busy for more than %g s: the watchdog is no longer fed", ", ".join(stuck), stuck_after)
            reported = bool(stuck)
            if watchdog and service.alive and not stuck and time.monotonic() - service.heartbeat < watchdog / 2:
                self.notifier.watchdog()
        self.stop()
        if service.signals.conflict_detail:
            leave_conflict_note(self.config.state_dir, service.signals.conflict_detail)
        return service.signals.exit_code if service.failed.is_set() else ExitCode.OK

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
        self.state_lock.release()
        log.info("stopped")
