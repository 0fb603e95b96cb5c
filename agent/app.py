"""Composition root: build the parts from the config, start them in order, stop them in reverse.

`faceagent run` (the daemon) and `faceagent enroll` (one enrollment without MQTT) live here; every
other module takes its collaborators as arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from typing import Any

from agent.config import Config, require_cloud_secrets
from agent.errors import ConfigError, ExitCode, FaceAgentError, ImageUnreadable, ModelError
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
        from agent.vision.commands import build_detector

        cfg = self.config
        self.notifier.status("opening the job store")
        self.store = JobStore(cfg.state_dir / "jobs.sqlite3")
        self.notifier.status("loading the face detector")
        detector = build_detector(cfg)
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


def cmd_run(args: argparse.Namespace) -> int:
    from agent.cli import load_config_or_exit
    from agent.service.store import StoreError

    config = load_config_or_exit(args)
    app = App(config)
    try:
        require_cloud_secrets(config)
        app.start()
    except ConfigError as exc:
        print(f"faceagent: {exc.message}", file=sys.stderr)
        return ExitCode.CONFIG
    except (ModelError, StoreError) as exc:
        # A bad model path or an unwritable state_dir will not fix itself: 78 stops systemd's restart loop.
        log.error("%s", exc.message)
        app.notifier.status(f"failed: {exc.message}")
        return ExitCode.CONFIG
    except FaceAgentError as exc:
        log.error("cannot start: %s", exc.message)
        return ExitCode.FAILED
    return app.run()


def cmd_enroll(args: argparse.Namespace) -> int:
    """`faceagent enroll`: one enrollment from files or the camera, without MQTT; prints the result object."""
    from agent.camera.base import Frame
    from agent.camera.camera import Camera, build_source
    from agent.cli import load_config_or_exit
    from agent.iai.client import IaiClient
    from agent.images import read_image
    from agent.service.enroller import Enroller
    from agent.service.protocol import EnrollCommand, base_result, parse_command
    from agent.vision.commands import build_detector

    config = load_config_or_exit(args)
    if not args.dry_run:
        try:
            require_cloud_secrets(config)
        except ConfigError as exc:
            print(f"faceagent: {exc.message}", file=sys.stderr)
            return ExitCode.CONFIG
    parsed = parse_command(json.dumps({"id": f"cli-{uuid.uuid4().hex[:12]}", "person_id": args.person_id, "faces": args.faces}).encode())
    if not isinstance(parsed, EnrollCommand):
        print(f"faceagent: {parsed.message}", file=sys.stderr)
        return ExitCode.USAGE
    command = parsed
    frames = None
    camera = None
    if args.image:
        try:
            start = time.time()
            gap = config.enroll.min_capture_gap_s + 0.01
            # Files have no capture time: each is its own moment, far enough apart to count as distinct captures.
            frames = [Frame(read_image(path), start + i * gap) for i, path in enumerate(args.image)]
        except ImageUnreadable as exc:
            print(f"faceagent: {exc.message}", file=sys.stderr)
            return ExitCode.USAGE
    else:
        camera = Camera(build_source(config.camera), config.camera.fps, None)
    client = None if args.dry_run else IaiClient.from_config(config.cloud, config.secrets)
    try:
        enroller = Enroller(config, build_detector(config), camera, client)
        outcome = enroller.run(command, frames=frames, dry_run_dir=args.out_dir if args.dry_run else None,
                               progress=lambda state, detail: print(f"{state}: {detail}", file=sys.stderr))
    finally:
        if camera is not None:
            camera.close()
        if client is not None:
            client.close()
    result = base_result(command.id, config.device_id, command.person_id)
    result.update(outcome.fields)
    result["timings_ms"] = {"queue": 0, **outcome.fields.get("timings_ms", {})}
    result["timings_ms"]["total"] = sum(result["timings_ms"].get(k, 0) for k in ("capture", "upload"))
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result))
    return ExitCode.OK if result["status"] == "succeeded" else ExitCode.FAILED


def format_result(result: dict[str, Any]) -> str:
    """One readable paragraph for a person at a terminal."""
    lines = [f"{result['status']}: person {result.get('person_id')} — {result.get('faces_added', 0)} face(s) added"]
    if result.get("face_ids"):
        lines.append(f"  face ids: {', '.join(result['face_ids'])}")
    if result.get("error"):
        lines.append(f"  {result['error']['code']}: {result['error']['message']}")
    if result.get("crops"):
        lines.append(f"  crops written: {', '.join(result['crops'])}")
    if result.get("cloud_request_id"):
        lines.append(f"  cloud RequestId: {result['cloud_request_id']}")
    timings = result.get("timings_ms") or {}
    lines.append("  timings ms: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return "\n".join(lines)
