"""Thread `worker`: the only user of the camera and the detector, and the only cloud writer.

Runs jobs one at a time (enrollments, and deletes: undo.py), settles lost uploads, serves snapshots.

A job's result is stored together with the messages that publish it (the outbox sends them). An
upload whose answer was lost and cannot be checked yet waits here, with its saved progress, and is
settled with backoff — also the ones found `uploading` after a restart. It is never sent again.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass

from agent.camera.camera import Camera
from agent.config import Config
from agent.errors import CameraUnavailable, ErrorCode, FaceAgentError
from agent.iai.upload import ReconcileDeferred, Uploader, UploadProgress
from agent.images import encode_jpeg
from agent.service.cloud_health import CloudHealth
from agent.service.enroller import Cancelled, Enroller
from agent.service.intake import result_messages
from agent.service.mqtt import MqttLink
from agent.service.protocol import DeleteCommand, EnrollCommand, SnapshotRequest, Topics
from agent.service.result import DeleteResult, EnrollResult, RejectedResult, Result, ResultError, Status, progress_payload
from agent.service.signals import Signals
from agent.service.store import Job, JobKind, JobStore, StoreCorrupt, StoreError
from agent.service.telemetry import IDLE_WAKE_S, Count, Counters, DeviceState
from agent.service.undo import Undo
from agent.vision.annotate import annotate
from agent.vision.detector import FaceDetector
from agent.vision.selection import analyze

log = logging.getLogger(__name__)

RECONCILE_RETRY_S = (5.0, 300.0)  # first and longest wait between tries to settle a lost upload
SNAPSHOT_GAP_S = 0.2  # snapshots are served at most 5 a second, one per turn of the loop, between jobs
STORE_RETRY_S = (1.0, 60.0)  # first and longest wait before writing a result again when the store fails


def result_kind(job: Job) -> type[EnrollResult | DeleteResult]:
    """The result type of a job's kind, for the answers the worker gives itself (internal error, unusable account)."""
    return DeleteResult if job.kind is JobKind.DELETE else EnrollResult


@dataclass
class PendingUpload:
    """A job whose upload answer was lost and could not be checked yet."""

    job: Job
    progress: UploadProgress
    next_try: float
    wait: float

    @property
    def command(self) -> EnrollCommand:
        """Only enrollments upload: the job's command, validated once with the job."""
        command = self.job.task
        assert isinstance(command, EnrollCommand), f"job {self.job.id} is a {self.job.kind.value}, not an upload"
        return command


class Worker:
    def __init__(
        self, *, config: Config, store: JobStore, enroller: Enroller, uploader: Uploader | None, undo: Undo,
        camera: Camera | None, detector: FaceDetector, link: MqttLink, counters: Counters, device: DeviceState,
        signals: Signals, health: CloudHealth | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.base_topic)
        self.store = store
        self.enroller = enroller
        self.uploader = uploader
        self.camera = camera
        self.detector = detector
        self.link = link
        self.counters = counters
        self.device = device
        self._result_stored = signals.result_stored
        self._state_changed = signals.state_changed
        self._fatal = signals.fail
        self.health = health
        self.undo = undo
        self.snapshots: queue.Queue[SnapshotRequest] = queue.Queue(maxsize=4)
        self.pending: list[PendingUpload] = []
        self.accepting = threading.Event()
        self.stopping = threading.Event()
        self._wake = signals.worker
        self.heartbeat = time.monotonic()
        self._next_snapshot = 0.0  # monotonic time the next snapshot may be served
        self.current_job: str | None = None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    # --- start-up ----------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Jobs interrupted by the last stop: capturing ones run again, uploading ones are settled (never re-sent)."""
        requeued, uploading = self.store.recover()
        if requeued:
            log.info("%d interrupted job(s) queued again", requeued)
        if uploading:
            log.warning("%d job(s) were mid-upload at the last stop: settling them with the cloud", len(uploading))
        now = time.monotonic()
        for job in uploading:
            if job.upload is None:  # saved by a version that kept no upload progress
                self._finish(job, EnrollResult(job.id, self.config.device_id, job.person_id, Status.UNKNOWN,
                                         error=ResultError.of(ErrorCode.OUTCOME_UNKNOWN, "the device stopped during the upload and "
                                                              "kept no record of it: check the person before sending again")))
            else:
                self.pending.append(PendingUpload(job, UploadProgress.from_json(job.upload), now, RECONCILE_RETRY_S[0]))

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stopping.is_set():
            self.beat()
            try:
                self._serve_snapshots()
                self._settle_due()
                job = self.store.claim_next() if self.accepting.is_set() else None
            except StoreCorrupt as exc:
                self._fatal(exc.message)
                return
            except StoreError as exc:
                self._storage_error(exc)
                self._wake.wait(STORE_RETRY_S[1] / 4)
                continue
            if job is None:
                if self.camera is not None:
                    self.camera.close_if_idle()
                self._wake.wait(min(IDLE_WAKE_S, self._next_settle_in(), self._snapshot_due_in()))
                self._wake.clear()
                continue
            self.current_job = job.id
            try:
                self.run_job(job)
            except Exception:
                log.exception("job %s failed unexpectedly", job.id)
                self._finish(job, result_kind(job)(job.id, self.config.device_id, job.person_id, Status.FAILED,
                                                   error=ResultError.of(ErrorCode.INTERNAL, "internal error on the device: see its log")))
            finally:
                self.current_job = None

    def run_job(self, job: Job) -> None:
        command_id, person_id = job.id, job.person_id
        picked_at = time.time()
        if job.expires_at is not None and picked_at > job.expires_at:
            self._finish(job, RejectedResult.of(command_id, self.config.device_id, person_id, ResultError.of(
                ErrorCode.EXPIRED, "the command expired while it waited in the queue"), Status.EXPIRED), picked_at)
            return
        refusal = self.health.refusal() if self.health is not None else None
        if refusal is not None:  # nothing captured that could not be uploaded
            self._finish(job, result_kind(job)(command_id, self.config.device_id, person_id, Status.FAILED, error=refusal), picked_at)
            return
        command = job.task
        if isinstance(command, DeleteCommand):
            self._finish(job, self.undo.run(command), picked_at)
            return
        log.info("enrolling person %s (command %s, %d face(s))", command.person_id, command.id, command.faces)
        self._progress(job, "capturing", "looking for a face")
        try:
            result = self.enroller.run(
                command,
                progress=lambda state, detail: self._progress(job, state, detail),
                cancel=self.stopping.is_set,
                heartbeat=self.beat,
            )
        except Cancelled:
            log.info("command %s interrupted by shutdown: queued again", job.id)
            self.store.requeue(job.id)
            return
        except ReconcileDeferred as exc:
            log.warning("command %s: the cloud's answer was lost and it cannot be checked now (%s): trying again later",
                        job.id, exc.cause.message)
            self.pending.append(PendingUpload(job, exc.progress, time.monotonic() + RECONCILE_RETRY_S[0], RECONCILE_RETRY_S[0]))
            self._progress(job, "uploading", "the cloud's answer was lost: checking what was enrolled")
            return
        self._finish(job, result, picked_at)

    def _finish(self, job: Job, result: Result, picked_at: float | None = None) -> None:
        """Store the result with its messages; while the store fails, keep it and try again with backoff."""
        result = result.completed(job.received_at, picked_at)
        messages = result_messages(result, self.topics.result_for(job.kind), job.response_topic, job.correlation)
        wait = STORE_RETRY_S[0]
        while True:
            try:
                self.store.finish(job.id, result.stored().to_json(), messages)
                break
            except StoreCorrupt as exc:
                self._fatal(exc.message)
                return
            except StoreError as exc:
                self._storage_error(exc)
                if self.stopping.wait(wait):
                    log.error("command %s: result not stored at shutdown; the job runs or is settled again at the next start", job.id)
                    return
                self.beat()
                wait = min(STORE_RETRY_S[1], wait * 2)
        if self.device.snapshot().get("storage_error"):
            self.device.set(storage_error=None)
        self._result_stored()
        failure = f" ({result.error.code.value}: {result.error.message})" if result.error else ""
        if job.kind is JobKind.DELETE:
            self.counters.inc(Count.DELETES)
            deleted = result.deleted_face_ids if isinstance(result, DeleteResult) else None
            log.info("delete %s %s: %d face(s) deleted%s", job.id, result.status.value, len(deleted or ()), failure)
            return
        self.counters.inc(Count(result.status.value))
        self.counters.latency(result.timings.total)
        self.device.set(last_result={"id": job.id, "person_id": result.person_id, "status": result.status.value,
                                     "error": result.error.code.value if result.error else None, "finished_at": result.finished_at})
        self._state_changed()
        log.info("command %s %s: %d face(s) added%s", job.id, result.status.value, result.faces_added, failure)

    def _storage_error(self, exc: StoreError) -> None:
        self.counters.inc(Count.STORE_ERRORS)
        if self.device.snapshot().get("storage_error") != exc.message:
            log.error("%s", exc.message)  # once per cause, not once per try
            self.device.set(storage_error=exc.message)
            self._state_changed()

    # --- lost uploads ---------------------------------------------------------------------------------------

    def _next_settle_in(self) -> float:
        if not self.pending:
            return IDLE_WAKE_S
        return max(0.0, min(p.next_try for p in self.pending) - time.monotonic())

    def _settle_due(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending if p.next_try <= now]:
            if self.uploader is None:
                return
            command = pending.command
            failure: FaceAgentError | None = None
            try:
                self.uploader.run(pending.progress, pending.job.id)
            except ReconcileDeferred as exc:
                if self._given_up(pending, exc):
                    continue
                pending.wait = min(RECONCILE_RETRY_S[1], pending.wait * 2)
                pending.next_try = now + pending.wait
                log.warning("settling %s: %s; next try in %.0f s", pending.job.id, exc.cause.message, pending.wait)
                continue
            except FaceAgentError as exc:  # a later attempt was refused: what was added before still counts
                failure = exc
            self.pending.remove(pending)
            progress = pending.progress
            result = self.enroller.upload_result(command, progress, wanted=command.faces, remaining=command.faces,
                                                 sent=progress.images_total, failure=failure)
            log.warning("command %s settled: %d face(s) of this command found at the cloud", pending.job.id, len(progress.face_ids))
            self._finish(pending.job, result)

    def _given_up(self, pending: PendingUpload, exc: ReconcileDeferred) -> bool:
        attempt = exc.progress.attempt
        if attempt is None:
            return False
        age = self.uploader.reconciler.elapsed(attempt) if self.uploader is not None else None
        if age is None:  # sent in another boot: the wall clock is all there is (giving up only says `unknown`)
            age = time.time() - attempt.sent_at
        if age < self.config.cloud.reconcile_give_up_s:
            return False
        self.pending.remove(pending)
        progress = exc.progress
        progress.unknown, progress.attempt = True, None
        command = pending.command
        result = self.enroller.upload_result(command, progress, wanted=command.faces, remaining=command.faces,
                                             sent=progress.images_total)
        log.error("command %s: the cloud could not be asked for %.0f s about a lost upload: outcome unknown",
                  pending.job.id, self.config.cloud.reconcile_give_up_s)
        self._finish(pending.job, result)
        return True

    # --- snapshots and progress --------------------------------------------------------------------------------

    def _snapshot_due_in(self) -> float:
        """Seconds until the next snapshot may be served (inf with none waiting)."""
        return math.inf if self.snapshots.empty() else max(0.0, self._next_snapshot - time.monotonic())

    def _serve_snapshots(self) -> None:
        """At most one snapshot per turn of the loop and per SNAPSHOT_GAP_S: a flood of requests (the queue refills as
        fast as it is served) must not keep the loop from the next enrollment, nor from its heartbeat."""
        if self.camera is None or time.monotonic() < self._next_snapshot:
            return
        try:
            request = self.snapshots.get_nowait()
        except queue.Empty:
            return
        self._next_snapshot = time.monotonic() + SNAPSHOT_GAP_S
        try:
            frame = self.camera.capture()
        except CameraUnavailable as exc:
            payload: dict[str, object] = {"id": request.id, "error": {"code": exc.code.value, "message": exc.message}}
        else:
            analysis = analyze(self.detector, frame.image, self.config.quality, self.config.selection, detect_image=frame.detect_image)
            jpeg = encode_jpeg(annotate(frame.image, analysis, self.config.crop), 80)
            payload = {"id": request.id, "jpeg_b64": base64.b64encode(jpeg).decode(),
                       "faces": [r.as_json() for r in analysis.faces], "verdict": analysis.verdict, "detail": analysis.detail}
            if self.config.home_assistant.discovery:  # the image entity reads raw bytes; not retained: faces stay off the broker
                self.link.publish(self.topics.snapshot_jpeg, jpeg, qos=0)
        self.link.publish(self.topics.snapshot_result, json.dumps(payload), qos=1)

    def _progress(self, job: Job, state: str, detail: str) -> None:
        payload = json.dumps(progress_payload(job.id, state, detail))
        self.link.publish(self.topics.progress, payload)
        if job.response_topic:
            self.link.publish(job.response_topic, payload, correlation=job.correlation)
