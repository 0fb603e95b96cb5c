"""One enrollment: read the person, capture until enough usable faces, crop, upload exactly once, judge.

Independent of MQTT: the daemon's worker and `faceagent enroll` both call `Enroller.run`, which returns
the command's `Result` (without queue time: the caller completes it).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.camera.base import Frame
from agent.camera.camera import Camera
from agent.config import Config
from agent.errors import CameraUnavailable, ErrorCode, FaceAgentError
from agent.iai.client import IaiClient
from agent.iai.errors import CloudError, DuplicatePerson, PersonNotFound, SpoofSuspected, ret_code_error
from agent.iai.limits import MAX_FACES_PER_PERSON
from agent.iai.models import PersonInfo
from agent.iai.upload import NewPerson, ReconcileDeferred, Uploader, UploadProgress
from agent.images import encode_jpeg
from agent.service.dry_run import dry_run_result, person_at_cloud, write_crops
from agent.service.liveness import check_liveness, liveness_json
from agent.service.protocol import EnrollCommand
from agent.service.result import DryRunResult, EnrollResult, Result, ResultError, Status, Timings
from agent.vision.crop import Crop, CropRefused, crop_for_upload
from agent.vision.detector import FaceDetector
from agent.vision.live_crop import liveness_crop
from agent.vision.selection import Analysis, Candidate, Refusal, analyze, pick_captures

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]  # (state, detail)
GUIDANCE_REPEAT_S = 2.0
MAX_RECAPTURES = 2  # after the cloud refused what the images showed: fresh captures within the command's capture time
CONTENT_REFUSALS = frozenset({ErrorCode.NO_FACE, ErrorCode.FACE_TOO_SMALL, ErrorCode.CLOUD_QUALITY})
IAI_DEFAULT_FACE_MATCH_THRESHOLD = 60.0  # what CreateFace applies when the field is omitted


class Cancelled(Exception):
    """The daemon is stopping: the job goes back to the queue."""


@dataclass
class Timer:
    capture_ms: float = 0.0
    detect_ms: float = 0.0
    upload_ms: float = 0.0

    def timings(self) -> Timings:
        return Timings(capture=round(self.capture_ms), detect=round(self.detect_ms), upload=round(self.upload_ms))


def preview_b64(crop: np.ndarray, side: int) -> str:
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA) if crop.shape[0] > side else crop
    return base64.b64encode(encode_jpeg(small, 80)).decode("ascii")


def capture_json(candidate: Candidate) -> dict[str, Any]:
    data = candidate.report.as_json()
    return {"score": data["score"], "box": data["box"], "quality": data["quality"]}


def judge_upload(command: EnrollCommand, progress: UploadProgress, *, wanted: int, remaining: int, sent: int,
                 failure: FaceAgentError | None = None, device_id: str = "DEVICE") -> tuple[Status, ResultError | None]:
    """The status and error of an upload that has ended (`failure`: the refusal that ended it early)."""
    added = len(progress.face_ids)
    if progress.unknown:
        candidates = ", ".join(progress.candidates) or "none seen"
        return Status.UNKNOWN, ResultError.of(ErrorCode.OUTCOME_UNKNOWN, (
            f"could not establish what the cloud did with the upload (faces that appeared meanwhile: {candidates}): "
            f"check person {command.person_id} before sending again"))
    if added >= command.faces:
        return Status.SUCCEEDED, None
    status = Status.PARTIAL if added else Status.FAILED
    if failure is not None:
        return status, ResultError.from_exception(failure)
    failed_codes = [c for c in progress.ret_codes if c != 0]
    if failed_codes:
        code, message = ret_code_error(failed_codes[0])
        return status, ResultError.of(code, message)
    if progress.reconciled and added < sent:
        return status, ResultError.of(ErrorCode.CLOUD_UNAVAILABLE, (
            f"the cloud's answer was lost and {sent - added} of {sent} image(s) did not appear on person {command.person_id} "
            "within read_timeout_s + settle_s of sending (IAI applies a face within 5 s), so they are taken as not enrolled: "
            + ("send a new command (a new id) for the rest" if added else "send the command again (nothing was added: its id runs again)")))
    return status, shortfall(command, wanted, remaining, sent, device_id) or ResultError.of(
        ErrorCode.CLOUD_REJECTED, f"the cloud added {added} of {sent} images")


def shortfall(command: EnrollCommand, wanted: int, remaining: int, sent: int, device_id: str) -> ResultError | None:
    """Why fewer images than the command asked for were (or, in a dry run, would be) sent; None when all were."""
    if wanted < command.faces:
        return ResultError.of(ErrorCode.PERSON_FACE_LIMIT, (
            f"person {command.person_id} had room for {remaining} more face(s) of {command.faces} asked: "
            f"{delete_hint(command.person_id, device_id)}"))
    if sent < wanted:
        return ResultError.of(ErrorCode.LOW_QUALITY, f"only {sent} of {wanted} distinct usable captures before the timeout: hold still longer")
    return None


def delete_hint(person_id: str, device_id: str) -> str:
    """What to do when a person's five faces are used up (docs/mqtt-api.md, "Delete command"): a command to paste."""
    return (f"delete one first (faceagent ctl delete --device {device_id} --person-id {person_id} --face-id FACE_ID, or "
            "--enrollment COMMAND_ID for the faces an enrollment added)")


class Enroller:
    def __init__(self, config: Config, *, detector: FaceDetector, camera: Camera | None, client: IaiClient | None,
                 uploader: Uploader | None, on_cloud_error: Callable[[CloudError], None] = lambda exc: None) -> None:
        self.config = config
        self._on_cloud_error = on_cloud_error  # the account's health learns from every refusal
        self.detector = detector
        self.camera = camera
        self.client = client
        self.uploader = uploader
        self.live_images: dict[bytes, bytes] = {}  # liveness.mode cloud: the last capture's liveness image per upload crop

    # --- capture ----------------------------------------------------------------------------------------

    def _frames(self, timeout_s: float, frames: Iterable[Frame] | None) -> Iterator[Frame]:
        if frames is not None:
            yield from frames
            return
        if self.camera is None:
            raise CameraUnavailable("no camera configured")
        yield from self.camera.burst(timeout_s)

    def capture(
        self, command: EnrollCommand, wanted: int, progress: Progress, cancel: Callable[[], bool], timer: Timer, *,
        frames: Iterable[Frame] | None = None, heartbeat: Callable[[], None] = lambda: None,
        timeout_s: float | None = None, exclude: frozenset[bytes] = frozenset(),
    ) -> tuple[list[tuple[Candidate, Crop]], Analysis | None, Refusal | None]:
        """Frames until `wanted` distinct usable captures (or the timeout): (picks, last analysis, last refusal).

        With liveness.mode cloud each capture's liveness image is cut from the same full-resolution frame
        (`self.live_images`, by the upload crop's bytes); a face too small for it is not a usable capture.
        `exclude`: crops already sent (the same bytes are never sent twice); `timeout_s`: what is left of the capture time.
        """
        timeout = timeout_s if timeout_s is not None else command.capture_timeout_s or self.config.enroll.capture_timeout_s
        gap = self.config.enroll.min_capture_gap_s
        found: list[tuple[Candidate, Crop]] = []
        last: Analysis | None = None
        refusal: Refusal | None = None
        self.live_images = {}
        liveness = self.config.liveness.mode == "cloud"
        said, said_at = "", 0.0
        started = time.monotonic()
        for frame in self._frames(timeout, frames):
            heartbeat()
            if cancel():
                raise Cancelled
            t0 = time.perf_counter()
            # Detect on the small stream when there is one; every figure comes back in capture pixels.
            analysis = analyze(self.detector, frame.image, self.config.quality, self.config.selection, detect_image=frame.detect_image)
            last = analysis
            detail = analysis.guidance
            if analysis.ok and analysis.target is not None:
                try:
                    crop = crop_for_upload(self.detector, frame.image, analysis.target.face, self.config.crop, self.config.selection)
                    live = liveness_crop(frame.image, analysis.target.face, self.config.crop.jpeg_quality) if liveness else b""
                except CropRefused as exc:
                    refusal = Refusal(exc.code, exc.message)
                    detail = exc.message if exc.code == ErrorCode.FACE_TOO_SMALL else refusal.guidance
                else:
                    # A byte-identical crop is the same capture: neither the cloud nor a later read-back could tell two apart.
                    if crop.jpeg not in exclude and all(crop.jpeg != other.jpeg for _, other in found):
                        found.append((Candidate(frame.timestamp, crop.image, analysis.target), crop))
                        if live:
                            self.live_images[crop.jpeg] = live
                    refusal = None
            timer.detect_ms += (time.perf_counter() - t0) * 1000
            now = time.monotonic()
            if detail != said or now - said_at >= GUIDANCE_REPEAT_S:
                progress("capturing", detail)
                said, said_at = detail, now
            if len(pick_captures([c for c, _ in found], wanted, gap)) >= wanted and self._spaced(found, wanted, gap):
                break
        timer.capture_ms += (time.monotonic() - started) * 1000
        chosen = pick_captures([c for c, _ in found], wanted, gap)
        by_id = {id(c): crop for c, crop in found}
        return [(c, by_id[id(c)]) for c in chosen], last, refusal

    @staticmethod
    def _spaced(found: list[tuple[Candidate, Crop]], wanted: int, gap: float) -> bool:
        """At least `wanted` captures that are `gap` seconds apart (greedy in time)."""
        count, last = 0, -1e18
        for cand, _ in found:
            if cand.timestamp - last >= gap:
                count, last = count + 1, cand.timestamp
        return count >= wanted or wanted == 1

    # --- the whole enrollment ---------------------------------------------------------------------------

    def run(
        self,
        command: EnrollCommand,
        *,
        progress: Progress = lambda state, detail: None,
        cancel: Callable[[], bool] = lambda: False,
        frames: Iterable[Frame] | None = None,
        crops_dir: Path | None = None,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> Result:
        """Capture and upload; the result (timings without the queue). Raises `Cancelled` and `ReconcileDeferred`.

        With `command.dry_run` nothing is written at the cloud (dry_run.py); `crops_dir` then receives the crops.
        """
        timer = Timer()
        base: EnrollResult | DryRunResult = (DryRunResult(command.id, self.config.device_id, command.person_id) if command.dry_run
                                             else EnrollResult(command.id, self.config.device_id, command.person_id, Status.FAILED))
        captures: tuple[dict[str, Any], ...] | None = None
        previews: tuple[str, ...] | None = None
        try:
            exists, remaining, info = self._person_slots(command)
            person = person_at_cloud(self.client, command, info, remaining) if command.dry_run and self.client else None
            wanted = min(command.faces, remaining)
            deadline = time.monotonic() + (command.capture_timeout_s or self.config.enroll.capture_timeout_s)
            sent: frozenset[bytes] = frozenset()
            refused: Result | None = None  # the last upload the cloud refused for what its images showed
            for round_ in range(MAX_RECAPTURES + 1):
                picks, last, refusal = self.capture(command, wanted, progress, cancel, timer, frames=frames, heartbeat=heartbeat,
                                                    timeout_s=None if refused is None else max(0.0, deadline - time.monotonic()), exclude=sent)
                if not picks:
                    if refused is not None:
                        return refused  # no new capture in the time left: the cloud's refusal stands
                    code, message = self._capture_failure(last, refusal)
                    return replace(base, error=ResultError.of(code, message), timings=timer.timings())
                captures = tuple(capture_json(c) for c, _ in picks)
                if command.preview:
                    previews = tuple(preview_b64(crop.image, self.config.enroll.preview_px) for _, crop in picks)
                if self.config.liveness.mode == "cloud" and self.client is not None:  # before anything is written
                    scores = check_liveness(self.client, [self.live_images[crop.jpeg] for _, crop in picks], self.config.liveness.threshold,
                                            progress)
                    base = replace(base, liveness=liveness_json(self.config.liveness.threshold, scores))
                if isinstance(base, DryRunResult):
                    crops = write_crops(crops_dir, command.person_id, [crop.jpeg for _, crop in picks]) if crops_dir else None
                    return dry_run_result(base, would_send=len(picks), person=person or {},
                                          shortfall=shortfall(command, wanted, remaining, len(picks), self.config.device_id), timings=timer.timings(),
                                          captures=captures, previews=previews, crops=crops)
                result = self._upload(command, picks, exists=exists, wanted=wanted, remaining=remaining, captures=captures,
                                      previews=previews, timer=timer, progress=progress)
                result = replace(result, liveness=base.liveness)
                if not self._may_recapture(result, deadline, round_):
                    return result
                refused, sent = result, sent | {crop.jpeg for _, crop in picks}
                assert result.error is not None
                log.warning("the cloud refused what %d image(s) of %s showed (%s): capturing afresh, %.1f s of the capture time left "
                            "(recapture %d of %d)", len(picks), command.person_id, result.error.code.value, deadline - time.monotonic(),
                            round_ + 1, MAX_RECAPTURES)
                progress("capturing", f"the cloud refused the image ({result.error.code.value}): {result.error.message}; capturing again")
            assert refused is not None
            return refused
        except (Cancelled, ReconcileDeferred):
            raise
        except FaceAgentError as exc:
            log.warning("enrollment of %s failed: %s", command.person_id, exc.message)
            request_id = exc.request_id if isinstance(exc, CloudError) else None
            if isinstance(exc, SpoofSuspected):
                base = replace(base, liveness=liveness_json(self.config.liveness.threshold, exc.scores))
            elif isinstance(exc, CloudError):
                self._on_cloud_error(exc)
            return replace(base, error=ResultError.from_exception(exc), cloud_request_id=request_id, captures=captures,
                           preview_jpeg_b64=previews, timings=timer.timings())

    def _upload(self, command: EnrollCommand, picks: list[tuple[Candidate, Crop]], *, exists: bool, wanted: int, remaining: int,
                captures: tuple[dict[str, Any], ...], previews: tuple[str, ...] | None, timer: Timer, progress: Progress,
                ) -> EnrollResult:
        """Send the picks exactly once; the result of that upload (a refusal that left nothing applied is in its error)."""
        progress("uploading", f"sending {len(picks)} image(s)")
        upload = self._new_upload(command, [crop.jpeg for _, crop in picks], exists)
        failure: FaceAgentError | None = None
        t0 = time.monotonic()
        try:
            assert self.uploader is not None
            self.uploader.run(upload, command.id)  # its journal entry: the command's
        except FaceAgentError as exc:  # a refusal that left nothing applied; what was added before it still counts
            log.warning("upload for %s ended: %s", command.person_id, exc.message)
            failure = exc
            if isinstance(exc, CloudError):
                self._on_cloud_error(exc)
        finally:
            timer.upload_ms += (time.monotonic() - t0) * 1000
        return self.upload_result(command, upload, wanted=wanted, remaining=remaining, sent=len(picks), captures=captures,
                                  previews=previews, timings=timer.timings(), failure=failure)

    @staticmethod
    def _may_recapture(result: Result, deadline: float, round_: int) -> bool:
        """Whether the cloud refused only what the images showed, nothing was added, and capture time and rounds are left."""
        return (result.status == Status.FAILED and result.error is not None and result.error.code in CONTENT_REFUSALS
                and not result.face_ids and round_ < MAX_RECAPTURES and time.monotonic() < deadline)

    def upload_result(self, command: EnrollCommand, upload: UploadProgress, *, wanted: int, remaining: int, sent: int,
                      captures: tuple[dict[str, Any], ...] | None = None, previews: tuple[str, ...] | None = None,
                      timings: Timings | None = None, failure: FaceAgentError | None = None) -> EnrollResult:
        """The result of an upload that has ended (also after a restart, where captures are gone)."""
        status, error = judge_upload(command, upload, wanted=wanted, remaining=remaining, sent=sent, failure=failure,
                                     device_id=self.config.device_id)
        request_id = upload.request_id or (failure.request_id if isinstance(failure, CloudError) else None)
        return EnrollResult(
            command.id, self.config.device_id, command.person_id, status, face_ids=tuple(upload.face_ids),
            ret_codes=tuple(upload.ret_codes), timings=timings or Timings(), error=error, captures=captures,
            cloud_request_id=request_id, face_model_version=upload.face_model_version, reconciled=upload.reconciled,
            person_created=upload.person_created, candidate_face_ids=tuple(upload.candidates) if upload.unknown else None,
            preview_jpeg_b64=previews, similar_person_id=failure.similar_person_id if isinstance(failure, DuplicatePerson) else None,
        )

    def _new_upload(self, command: EnrollCommand, images: list[bytes], exists: bool) -> UploadProgress:
        spec = command.create_person
        floor = self.config.commands.min_face_match_threshold
        threshold = command.face_match_threshold
        if threshold is None and floor > IAI_DEFAULT_FACE_MATCH_THRESHOLD:
            threshold = floor  # the device's floor applies whether or not the command names the field
        return UploadProgress(
            command.person_id, images,
            new_person=NewPerson(spec.group_id, spec.person_name, spec.gender, self._unique_person_control(command))
            if spec is not None and not exists else None,
            face_match_threshold=threshold, quality_control=command.quality_control,
            need_rotate_detection=command.need_rotate_detection,
        )

    def _unique_person_control(self, command: EnrollCommand) -> int | None:
        """The command's create_person.unique_person_control, else the device's default; None (omitted) for 0."""
        spec = command.create_person
        level = spec.unique_person_control if spec is not None and spec.unique_person_control is not None else \
            self.config.enroll.unique_person_control
        return level or None

    def _person_slots(self, command: EnrollCommand) -> tuple[bool, int, PersonInfo | None]:
        """(whether the person exists, free face slots, what the cloud said), read before capturing: a hopeless command fails fast."""
        if self.client is None:
            return True, command.faces, None
        try:
            info = self.client.get_person_base_info(command.person_id)
        except PersonNotFound:
            if command.create_person is None:
                raise
            return False, MAX_FACES_PER_PERSON, None
        remaining = MAX_FACES_PER_PERSON - len(info.face_ids)
        if remaining <= 0:
            hint = delete_hint(command.person_id, self.config.device_id)
            raise FaceAgentError(f"person {command.person_id} already has {len(info.face_ids)} faces: {hint}",
                                 code=ErrorCode.PERSON_FACE_LIMIT)
        return True, remaining, info

    @staticmethod
    def _capture_failure(last: Analysis | None, refusal: Refusal | None) -> tuple[ErrorCode, str]:
        if last is None:
            return ErrorCode.CAMERA_UNAVAILABLE, "the camera delivered no frame"
        if refusal is not None:  # the crop of a usable frame was refused, each for its own reason
            return refusal.code, refusal.detail
        if last.refusal is None:
            return ErrorCode.LOW_QUALITY, "no usable capture before the timeout: hold still"
        code = last.refusal.code
        hint = {ErrorCode.NO_FACE: "no face seen", ErrorCode.FACE_TOO_SMALL: "face too small: move closer",
                ErrorCode.MULTIPLE_FACES: "several people in view: only one person please"}.get(code, "face not usable")
        return code, f"{hint} ({last.detail})" if last.detail and code != ErrorCode.NO_FACE else hint
