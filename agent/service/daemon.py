"""The enrollment service: intake (parse, store, ack), one worker (the camera is one device), outbox, telemetry.

Threads and what they own:
- paho's network thread: only hands messages and PUBACKs over to queues (agent/service/mqtt.py);
- intake: validates each command, stores it, then acknowledges it (manual PUBACK);
- worker: claims stored jobs one at a time, runs `Enroller`, stores result + outbox atomically;
- outbox: publishes stored results with QoS 1 and deletes them on PUBACK, again after every reconnect;
- telemetry: `base/telemetry` every `mqtt.telemetry_interval_s`, and pruning of old results.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import queue
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from agent import __version__
from agent.camera.camera import Camera
from agent.config import Config
from agent.errors import CameraUnavailable, ErrorCode
from agent.iai.client import IaiClient
from agent.iai.errors import CloudError, OutcomeUnknown, PersonNotFound
from agent.images import encode_jpeg
from agent.service.enroller import Cancelled, Enroller, Outcome
from agent.service.mqtt import MqttLink
from agent.service.protocol import (
    EnrollCommand,
    Rejection,
    Topics,
    base_result,
    error_result,
    iso_now,
    parse_command,
    progress_payload,
    rejection_result,
    sign_command,
)
from agent.service.store import Job, JobStore, Message, StoreError
from agent.vision.annotate import annotate
from agent.vision.detector import FaceDetector
from agent.vision.selection import analyze

log = logging.getLogger(__name__)

RECONCILE_RETRY_S = (5.0, 300.0)  # first and longest wait between reconciliation attempts
IDLE_WAKE_S = 5.0  # idle loops wake on events; this is only their safety net (an idle daemon uses ~0 % CPU)


@dataclass
class Pending:
    """A job whose CreateFace outcome is unknown: reconcile it at `next_try`."""

    job: Job
    next_try: float
    wait: float


class EnrollService:
    def __init__(
        self, config: Config, store: JobStore, enroller: Enroller, camera: Camera | None, detector: FaceDetector,
        client: IaiClient | None, password: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.enroller = enroller
        self.camera = camera
        self.detector = detector
        self.client = client
        self.topics = Topics(config.base_topic)
        self.command_key = config.secrets.command_key.get_secret_value().encode() if config.secrets.command_key else None
        self._incoming: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._delivered: queue.Queue[int] = queue.Queue()
        self._snapshots: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=4)
        self.link = MqttLink(config.mqtt, config.device_id, password, self.topics, self._incoming.put, self._on_connected,
                             self._on_delivered)
        self.accepting = threading.Event()
        self.stopping = threading.Event()
        self.job_wake = threading.Event()
        self.outbox_wake = threading.Event()
        self.counters: Counter[str] = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=200)
        self.heartbeat = time.monotonic()
        self.current_job: str | None = None
        self.last_result: dict[str, Any] | None = None
        self.started_at = iso_now()
        self._started_monotonic = time.monotonic()
        self._pending: list[Pending] = []
        self._threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        requeued, uploading = self.store.recover()
        if requeued:
            log.info("%d interrupted job(s) queued again", requeued)
        now = time.monotonic()
        self._pending = [Pending(job, now, RECONCILE_RETRY_S[0]) for job in uploading]
        if uploading:
            log.warning("%d job(s) were mid-upload at the last stop: reconciling with the cloud", len(uploading))
        self.accepting.set()
        self.link.start()
        for name, target in (("intake", self._intake_loop), ("worker", self._worker_loop), ("outbox", self._outbox_loop),
                             ("telemetry", self._telemetry_loop)):
            thread = threading.Thread(target=target, name=f"faceagent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float) -> None:
        """Stop taking commands; let the running job finish within `grace_s` (else it is re-queued); publish `offline`."""
        self.accepting.clear()
        try:
            self.link.client.unsubscribe([self.topics.enroll, self.topics.snapshot])
        except Exception as exc:  # not connected: nothing to unsubscribe
            log.debug("unsubscribe: %s", exc)
        deadline = time.monotonic() + grace_s
        while self.current_job and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stopping.set()  # a capture still running is cancelled and re-queued
        self.job_wake.set()
        self.outbox_wake.set()
        for thread in self._threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()) if thread.name.endswith("worker") else 2.0)
        self._flush_outbox(timeout=2.0)
        self.link.stop()

    @property
    def alive(self) -> bool:
        """Every thread is running (progress is judged by `heartbeat`: per frame, and at least every IDLE_WAKE_S idle)."""
        return all(t.is_alive() for t in self._threads)

    # --- callbacks from the network thread: hand over only ---------------------------------------

    def _on_connected(self) -> None:
        self.outbox_wake.set()
        self.publish_state()

    def _on_delivered(self, seq: int) -> None:
        self._delivered.put(seq)
        self.outbox_wake.set()

    # --- intake ----------------------------------------------------------------------------------

    def _intake_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                message = self._incoming.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                self.handle_message(message)
            except StoreError as exc:
                # Not acknowledged: the broker delivers it again after a reconnect.
                log.error("command not stored, not acknowledged: %s", exc.message)
                self.counters["store_errors"] += 1
                time.sleep(1.0)
            except Exception:
                log.exception("unexpected error handling a message on %s; acknowledged and dropped", message.topic)
                self.counters["internal_errors"] += 1
                self.link.ack(message)

    def handle_message(self, message: mqtt.MQTTMessage) -> None:
        if not self.accepting.is_set():
            return  # stopping: leave it unacknowledged for the next run
        if message.retain:
            log.warning("ignoring a retained message on %s: commands must not be retained", message.topic)
            self.counters["ignored_retained"] += 1
            self.link.ack(message)
            return
        if message.topic == self.topics.snapshot:
            self._queue_snapshot(message)
            self.link.ack(message)
            return
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) or None
        correlation = getattr(props, "CorrelationData", None)
        expiry = getattr(props, "MessageExpiryInterval", None)
        self.counters["received"] += 1
        payload = bytes(message.payload)
        parsed = parse_command(payload)
        if isinstance(parsed, EnrollCommand):
            parsed = self._check_policy(parsed, payload)
        if isinstance(parsed, Rejection):
            self._reject(parsed, response_topic, correlation)
        else:
            self._accept(parsed, response_topic, correlation, time.time() + expiry if expiry else None)
        self.link.ack(message)

    def _check_policy(self, command: EnrollCommand, payload: bytes) -> EnrollCommand | Rejection:
        cfg = self.config.commands
        floor = cfg.min_face_match_threshold
        if command.face_match_threshold is not None and command.face_match_threshold < floor:
            return Rejection(command.id, command.person_id, "rejected", ErrorCode.INVALID_COMMAND,
                             f"face_match_threshold: must be >= {floor:g} on this device (policy)")
        if cfg.require_signature or command.sig is not None:
            why = self._signature_problem(command, json.loads(payload))
            if why:
                return Rejection(command.id, command.person_id, "rejected", ErrorCode.INVALID_COMMAND, why)
        return command

    def _signature_problem(self, command: EnrollCommand, raw: dict[str, Any]) -> str | None:
        if self.command_key is None:
            return "sig: this device has no command_hmac_key to check signatures" if self.config.commands.require_signature else None
        if command.sig is None or command.ts is None:
            return "sig: signed commands are required on this device (fields ts and sig)"
        if abs(time.time() - command.ts) > self.config.commands.max_clock_skew_s:
            return f"ts: the signature timestamp is more than {self.config.commands.max_clock_skew_s} s from the device clock"
        expected = sign_command(raw, self.command_key)  # over what the operator sent, not our defaults
        if not hmac.compare_digest(expected, command.sig):
            return "sig: the signature does not match the command"
        return None

    def _reject(self, rejection: Rejection, response_topic: str | None, correlation: bytes | None) -> None:
        if rejection.id is not None and self._replay_if_known(rejection.id, response_topic, correlation):
            return
        self.counters["expired" if rejection.status == "expired" else "rejected"] += 1
        result = rejection_result(rejection, self.config.device_id)
        log.info("command %s %s: %s", rejection.id, rejection.status, rejection.message)
        messages = self._result_messages(result, response_topic, correlation)
        if rejection.id is None:
            self.store.enqueue(messages)
        else:
            self.store.store_final({"id": rejection.id, "person_id": rejection.person_id}, result, messages, response_topic, correlation)
        self.outbox_wake.set()

    def _replay_if_known(self, job_id: str, response_topic: str | None, correlation: bytes | None) -> bool:
        job = self.store.get(job_id)
        if job is None:
            return False
        self._duplicate(job, response_topic, correlation)
        return True

    def _duplicate(self, job: Job, response_topic: str | None, correlation: bytes | None) -> None:
        if job.result is None:
            log.info("command %s is already %s: acknowledged, not run twice", job.id, job.state)
            self.counters["duplicates_in_progress"] += 1
            self._progress(job.id, "queued" if job.state == "queued" else ("uploading" if job.state == "uploading" else "capturing"),
                           "already in progress: not run twice", response_topic, correlation)
            return
        self.counters["replayed"] += 1
        replay = {**job.result, "replayed": True}
        self.store.enqueue(self._result_messages(replay, response_topic, correlation))
        self.outbox_wake.set()

    def _accept(self, command: EnrollCommand, response_topic: str | None, correlation: bytes | None, mqtt_expiry: float | None) -> None:
        expiries = [t for t in (command.expires_at, mqtt_expiry) if t is not None]
        submitted = self.store.submit(command.model_dump(mode="json", exclude_none=True), queue_size=self.config.enroll.queue_size,
                                      expires_at=min(expiries) if expiries else None, response_topic=response_topic, correlation=correlation)
        if submitted.outcome == "duplicate":
            self._duplicate(submitted.job, response_topic, correlation)
        elif submitted.outcome == "queue_full":
            self.counters["queue_full"] += 1
            result = error_result(command, self.config.device_id, "rejected", ErrorCode.QUEUE_FULL,
                                  f"{self.config.enroll.queue_size} commands are already waiting: send it again later", retryable=True)
            self.store.enqueue(self._result_messages(result, response_topic, correlation))
            self.outbox_wake.set()
        else:
            depth = self.store.depth()
            self._progress(command.id, "queued", "next" if depth <= 1 else f"position {depth} in the queue", response_topic, correlation)
            self.job_wake.set()

    def _queue_snapshot(self, message: mqtt.MQTTMessage) -> None:
        try:
            request = json.loads(message.payload)
            request_id = request.get("id") if isinstance(request, dict) else None
        except ValueError:
            request_id = None
        try:
            self._snapshots.put_nowait({"id": request_id if isinstance(request_id, str) else None})
            self.job_wake.set()
        except queue.Full:
            log.warning("snapshot request dropped: %d already waiting", self._snapshots.maxsize)

    # --- worker ----------------------------------------------------------------------------------

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _worker_loop(self) -> None:
        while not self.stopping.is_set():
            self.beat()
            try:
                self._reconcile_due()
                self._serve_snapshots()
                job = self.store.claim_next() if self.accepting.is_set() else None
            except StoreError as exc:
                log.error("%s", exc.message)
                self.job_wake.wait(5.0)
                continue
            if job is None:
                if self.camera is not None:
                    self.camera.close_if_idle()
                self.job_wake.wait(min(IDLE_WAKE_S, self._next_reconcile_in()))
                self.job_wake.clear()
                continue
            self.current_job = job.id
            try:
                self.run_job(job)
            except StoreError as exc:
                log.error("job %s: %s", job.id, exc.message)
            except Exception:
                log.exception("job %s failed unexpectedly", job.id)
                self._finish(job, error_result(self._command(job), self.config.device_id, "failed", ErrorCode.INTERNAL,
                                               "internal error on the device: see its log"), time.time())
            finally:
                self.current_job = None

    @staticmethod
    def _command(job: Job) -> EnrollCommand:
        return EnrollCommand.model_validate(job.command)

    def run_job(self, job: Job) -> None:
        command = self._command(job)
        picked_at = time.time()
        if job.expires_at is not None and picked_at > job.expires_at:
            self.counters["expired"] += 1
            self._finish(job, error_result(command, self.config.device_id, "expired", ErrorCode.EXPIRED,
                                           "the command expired while it waited in the queue"), picked_at)
            return
        log.info("enrolling person %s (command %s, %d face(s))", command.person_id, command.id, command.faces)
        self._progress(job.id, "capturing", "looking for a face", job.response_topic, job.correlation)
        try:
            outcome = self.enroller.run(
                command,
                progress=lambda state, detail: self._progress(job.id, state, detail, job.response_topic, job.correlation),
                cancel=self.stopping.is_set,
                before_upload=lambda known: self.store.mark_uploading(job.id, known),
                heartbeat=self.beat,
            )
        except Cancelled:
            log.info("command %s interrupted by shutdown: queued again", job.id)
            self.store.requeue(job.id)
            return
        except OutcomeUnknown as exc:
            log.warning("command %s: %s; will reconcile with the cloud", job.id, exc.message)
            stored = self.store.get(job.id)
            self._pending.append(Pending(stored or job, time.monotonic() + RECONCILE_RETRY_S[0], RECONCILE_RETRY_S[0]))
            self._progress(job.id, "uploading", "the cloud's answer was lost: checking what was enrolled", job.response_topic, job.correlation)
            return
        result = self._assemble(job, command, outcome, picked_at)
        self._finish(job, result, picked_at)

    def _assemble(self, job: Job, command: EnrollCommand, outcome: Outcome, picked_at: float) -> dict[str, Any]:
        result = base_result(command.id, self.config.device_id, command.person_id)
        result.update(outcome.fields)
        timings = {"queue": round((picked_at - job.received_at) * 1000), **outcome.fields.get("timings_ms", {})}
        result["timings_ms"] = {**timings, "total": round((time.time() - job.received_at) * 1000)}
        return result

    def _finish(self, job: Job, result: dict[str, Any], picked_at: float) -> None:
        result.setdefault("timings_ms", {})
        result["timings_ms"].setdefault("queue", round((picked_at - job.received_at) * 1000))
        result["timings_ms"]["total"] = round((time.time() - job.received_at) * 1000)
        for key in ("capture", "detect", "upload"):
            result["timings_ms"].setdefault(key, 0)
        result["finished_at"] = iso_now()
        self.store.finish(job.id, result, self._result_messages(result, job.response_topic, job.correlation))
        self.outbox_wake.set()
        status = result["status"]
        self.counters[status] += 1
        self.latencies_ms.append(result["timings_ms"]["total"])
        self.last_result = {"id": job.id, "person_id": result.get("person_id"), "status": status,
                            "error": (result.get("error") or {}).get("code"), "finished_at": result["finished_at"]}
        log.info("command %s %s: %d face(s) added%s", job.id, status, result.get("faces_added", 0),
                 f" ({result['error']['code']}: {result['error']['message']})" if result.get("error") else "")
        self.publish_state()

    def _next_reconcile_in(self) -> float:
        if not self._pending:
            return IDLE_WAKE_S
        return max(0.0, min(p.next_try for p in self._pending) - time.monotonic())

    def _reconcile_due(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self._pending if p.next_try <= now]:
            if self.client is None:
                return
            job = pending.job
            command = self._command(job)
            known = job.known_face_ids or []
            try:
                info = self.client.get_person_base_info(command.person_id)
                new = [f for f in info.face_ids if f not in known]
            except PersonNotFound:
                new = []
            except CloudError as exc:
                pending.wait = min(RECONCILE_RETRY_S[1], pending.wait * 2)
                pending.next_try = now + pending.wait
                log.warning("reconciling %s: %s; next try in %.0f s", job.id, exc.message, pending.wait)
                continue
            self._pending.remove(pending)
            result = base_result(command.id, self.config.device_id, command.person_id)
            result.update(faces_added=len(new), face_ids=new, ret_codes=[], reconciled=True)
            if len(new) >= command.faces:
                result["status"] = "succeeded"
            else:
                result["status"] = "partial" if new else "failed"
                result["error"] = {"code": ErrorCode.CLOUD_UNAVAILABLE.value, "retryable": True, "message": (
                    f"the upload was interrupted; the cloud holds {len(new)} new face(s) of {command.faces}: send the command again"
                    if new else "the upload was interrupted and nothing was enrolled: send the command again")}
            log.warning("command %s reconciled: %d new face(s) found at the cloud", job.id, len(new))
            self._finish(job, result, time.time())

    def _serve_snapshots(self) -> None:
        while not self._snapshots.empty() and self.camera is not None:
            request = self._snapshots.get_nowait()
            try:
                frame = self.camera.capture()
            except CameraUnavailable as exc:
                payload: dict[str, Any] = {"id": request["id"], "error": {"code": exc.code.value, "message": exc.message}}
            else:
                analysis = analyze(self.detector, frame.detection, self.config.quality, self.config.selection)
                image = annotate(frame.detection, analysis)
                payload = {"id": request["id"], "jpeg_b64": base64.b64encode(encode_jpeg(image, 80)).decode(),
                           "faces": [r.as_json() for r in analysis.faces], "verdict": analysis.verdict}
            self.link.publish(self.topics.snapshot_result, json.dumps(payload), qos=1)

    # --- outbox ----------------------------------------------------------------------------------

    def _outbox_loop(self) -> None:
        while not self.stopping.is_set():
            self.outbox_wake.wait(IDLE_WAKE_S)
            self.outbox_wake.clear()
            try:
                self._drain_delivered()
                if self.link.connected.is_set():
                    for item in self.store.outbox():
                        self.link.publish_outgoing(item)
            except StoreError as exc:
                log.error("outbox: %s", exc.message)
                time.sleep(1.0)

    def _drain_delivered(self) -> None:
        while True:
            try:
                seq = self._delivered.get_nowait()
            except queue.Empty:
                return
            self.store.delivered(seq)

    def _flush_outbox(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._drain_delivered()
                pending = self.store.outbox()
            except StoreError:
                return
            if not pending or not self.link.connected.is_set():
                return
            for item in pending:
                self.link.publish_outgoing(item)
            time.sleep(0.05)

    def _result_messages(self, result: dict[str, Any], response_topic: str | None, correlation: bytes | None) -> list[Message]:
        payload = json.dumps(result, ensure_ascii=False).encode("utf-8")
        messages: list[Message] = [(self.topics.result, payload, None)]
        if response_topic and response_topic != self.topics.result:
            messages.append((response_topic, payload, correlation))
        return messages

    def _progress(self, job_id: str, state: str, detail: str, response_topic: str | None, correlation: bytes | None) -> None:
        payload = json.dumps(progress_payload(job_id, state, detail))
        self.link.publish(self.topics.progress, payload, qos=0)
        if response_topic and response_topic != self.topics.result:
            self.link.publish(response_topic, payload, qos=0, correlation=correlation)

    # --- state and telemetry -----------------------------------------------------------------------

    def publish_state(self) -> None:
        try:
            depth = self.store.depth()
        except StoreError:
            depth = -1
        state = {
            "version": __version__, "device_id": self.config.device_id, "started_at": self.started_at,
            "camera": self.camera.health() if self.camera else None, "detector": self.detector.describe(),
            "queue_depth": depth, "last_result": self.last_result,
        }
        self.link.publish(self.topics.state, json.dumps(state), qos=1, retain=True)

    def telemetry(self) -> dict[str, Any]:
        latencies = list(self.latencies_ms)
        keys = ("received", "succeeded", "partial", "failed", "rejected", "expired", "replayed", "queue_full", "ignored_retained")
        return {
            "device_id": self.config.device_id, "at": iso_now(),
            "uptime_s": round(time.monotonic() - self._started_monotonic),
            "counters": {k: self.counters.get(k, 0) for k in keys},
            "latency_ms": {"last": latencies[-1] if latencies else None,
                           "p50": statistics.median(latencies) if latencies else None,
                           "max": max(latencies) if latencies else None},
            "queue_depth": self.store.depth(), "outbox_inflight": self.link.inflight(),
            "camera": self.camera.health() if self.camera else None, "mqtt_connects": self.link.connects,
        }

    def _telemetry_loop(self) -> None:
        interval = self.config.mqtt.telemetry_interval_s
        next_prune = 0.0
        while not self.stopping.wait(interval):
            try:
                self.link.publish(self.topics.telemetry, json.dumps(self.telemetry()), qos=0)
                if time.monotonic() >= next_prune:
                    pruned = self.store.prune(self.config.enroll.result_retention_days * 86400)
                    if pruned:
                        log.info("forgot %d result(s) older than %d days", pruned, self.config.enroll.result_retention_days)
                    next_prune = time.monotonic() + 3600
            except StoreError as exc:
                log.error("telemetry: %s", exc.message)
