"""One enrollment: read the person, capture until enough usable faces, crop, upload, and build the result.

Independent of MQTT: the daemon's worker and `faceagent enroll` both call `Enroller.run`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.camera.base import Frame
from agent.camera.camera import Camera
from agent.config import Config
from agent.errors import CameraUnavailable, ErrorCode, FaceAgentError
from agent.iai.client import CreateFaceRequest, CreatePersonRequest, IaiClient
from agent.iai.errors import CloudError, OutcomeUnknown, PersonAlreadyExists, PersonNotFound, ret_code_error
from agent.iai.limits import MAX_FACES_PER_PERSON
from agent.images import encode_jpeg
from agent.service.protocol import EnrollCommand
from agent.vision.crop import Crop, CropRefused, crop_for_upload
from agent.vision.detector import Face, FaceDetector
from agent.vision.quality import measure
from agent.vision.selection import GUIDANCE, Analysis, Candidate, FaceReport, analyze, pick_captures

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]  # (state, detail)
GUIDANCE_REPEAT_S = 2.0


class Cancelled(Exception):
    """The daemon is stopping: the job goes back to the queue."""


@dataclass(frozen=True)
class Outcome:
    """What `run` found: the result fields (without id/device/replay/queue timing) and whether it enrolled."""

    fields: dict[str, Any]


@dataclass
class Timer:
    capture_ms: float = 0.0
    detect_ms: float = 0.0
    upload_ms: float = 0.0


def scale_face(face: Face, sx: float, sy: float) -> Face:
    """A face found on the detection frame, in `main` frame pixels."""
    if (sx, sy) == (1.0, 1.0):
        return face
    x1, y1, x2, y2 = face.box
    return Face((x1 * sx, y1 * sy, x2 * sx, y2 * sy), face.score, face.landmarks * np.array([sx, sy]))


def preview_b64(crop: np.ndarray, side: int) -> str:
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA) if crop.shape[0] > side else crop
    return base64.b64encode(encode_jpeg(small, 80)).decode("ascii")


class Enroller:
    def __init__(self, config: Config, detector: FaceDetector, camera: Camera | None, client: IaiClient | None) -> None:
        self.config = config
        self.detector = detector
        self.camera = camera
        self.client = client

    # --- capture --------------------------------------------------------------------------------

    def _frames(self, timeout_s: float, frames: Iterable[Frame] | None) -> Iterator[Frame]:
        if frames is not None:
            yield from frames
            return
        if self.camera is None:
            raise CameraUnavailable("no camera configured")
        yield from self.camera.burst(timeout_s)

    def capture(
        self, command: EnrollCommand, wanted: int, progress: Progress, cancel: Callable[[], bool], timer: Timer,
        frames: Iterable[Frame] | None = None, heartbeat: Callable[[], None] = lambda: None,
    ) -> tuple[list[tuple[Candidate, Crop]], Analysis | None, str]:
        """Frames until `wanted` distinct usable captures (or the timeout): (picks, last analysis, last refusal)."""
        timeout = command.capture_timeout_s or self.config.enroll.capture_timeout_s
        gap = self.config.enroll.min_capture_gap_s
        found: list[tuple[Candidate, Crop]] = []
        last: Analysis | None = None
        refusal = ""
        said, said_at = "", 0.0
        started = time.monotonic()
        for frame in self._frames(timeout, frames):
            heartbeat()
            if cancel():
                raise Cancelled
            t0 = time.perf_counter()
            analysis = analyze(self.detector, frame.detection, self.config.quality, self.config.selection)
            last = analysis
            detail = analysis.guidance
            if analysis.ok and analysis.target is not None:
                face = scale_face(analysis.target.face, *frame.detect_scale)
                try:
                    crop = crop_for_upload(self.detector, frame.image, face, self.config.crop, self.config.selection)
                except CropRefused as exc:
                    refusal = exc.message
                    detail = GUIDANCE.get(exc.code, exc.message)
                else:
                    report = FaceReport(face, measure(frame.image, face), [])
                    found.append((Candidate(frame.timestamp, crop.image, report), crop))
                    refusal = ""
            timer.detect_ms += (time.perf_counter() - t0) * 1000
            now = time.monotonic()
            if detail != said or now - said_at >= GUIDANCE_REPEAT_S:
                progress("capturing", detail)
                said, said_at = detail, now
            if len(pick_captures([c for c, _ in found], wanted, gap)) >= wanted and self._spaced(found, wanted, gap):
                break
        timer.capture_ms = (time.monotonic() - started) * 1000
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

    # --- the whole enrollment ------------------------------------------------------------------

    def run(
        self,
        command: EnrollCommand,
        *,
        progress: Progress = lambda state, detail: None,
        cancel: Callable[[], bool] = lambda: False,
        before_upload: Callable[[list[str]], None] = lambda known: None,
        frames: Iterable[Frame] | None = None,
        dry_run_dir: Path | None = None,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> Outcome:
        timer = Timer()
        fields: dict[str, Any] = {"person_id": command.person_id, "faces_added": 0, "face_ids": [], "ret_codes": []}
        try:
            known, remaining = self._person_slots(command, dry_run_dir is not None)
            wanted = min(command.faces, remaining)
            picks, last, refusal = self.capture(command, wanted, progress, cancel, timer, frames, heartbeat)
            if picks:
                fields["captures"] = [self._capture_json(c) for c, _ in picks]
                if command.preview:
                    fields["preview_jpeg_b64"] = [preview_b64(crop.image, self.config.enroll.preview_px) for _, crop in picks]
            if not picks:
                return self._outcome(fields, timer, "failed", *self._capture_failure(last, refusal, command))
            if dry_run_dir is not None:
                return self._dry_run(fields, timer, picks, dry_run_dir)
            progress("uploading", f"sending {len(picks)} image(s)")
            t0 = time.monotonic()
            try:
                self._upload(command, picks, known, fields, before_upload)
            finally:
                timer.upload_ms = (time.monotonic() - t0) * 1000
            return self._judge(command, fields, timer, wanted, remaining, len(picks))
        except OutcomeUnknown:
            raise  # CreateFace may have landed: the worker keeps the job `uploading` and reconciles later
        except FaceAgentError as exc:
            log.warning("enrollment of %s failed: %s", command.person_id, exc.message)
            fields["error"] = exc.as_result_error()
            if isinstance(exc, CloudError) and exc.request_id:
                fields["cloud_request_id"] = exc.request_id
            return Outcome({**fields, "status": "failed", **self._timings(timer)})

    def _person_slots(self, command: EnrollCommand, dry_run: bool) -> tuple[list[str] | None, int]:
        """(the person's FaceIds, or None when it does not exist yet; free slots). Read before capturing."""
        if dry_run or self.client is None:
            return [], command.faces
        try:
            known = self.client.get_person_base_info(command.person_id).face_ids
        except PersonNotFound:
            if command.create_person is None:
                raise
            return None, MAX_FACES_PER_PERSON
        remaining = MAX_FACES_PER_PERSON - len(known)
        if remaining <= 0:
            raise FaceAgentError(f"person {command.person_id} already has {len(known)} faces: delete one before adding more",
                                 code=ErrorCode.PERSON_FACE_LIMIT)
        return known, remaining

    def _upload(self, command: EnrollCommand, picks: list[tuple[Candidate, Crop]], known: list[str] | None,
                fields: dict[str, Any], before_upload: Callable[[list[str]], None]) -> None:
        assert self.client is not None
        images = [crop.jpeg for _, crop in picks]
        before_upload(known or [])
        ret_codes: list[int] = []
        face_ids: list[str] = []
        if known is None and command.create_person is not None:
            spec = command.create_person
            try:
                person = self.client.create_person(CreatePersonRequest(
                    spec.group_id, spec.person_name, command.person_id, image=images[0], gender=spec.gender,
                    quality_control=command.quality_control, need_rotate_detection=command.need_rotate_detection))
            except PersonAlreadyExists:
                known = self.client.get_person_base_info(command.person_id).face_ids  # created meanwhile: add all
            else:
                face_ids.append(str(person.face_id))
                ret_codes.append(0)
                fields.update(cloud_request_id=person.request_id, face_model_version=person.face_model_version, person_created=True)
                if person.reconciled:
                    fields["reconciled"] = True
                known = [str(person.face_id)]
                images = images[1:]
        if images:
            response = self.client.create_face(CreateFaceRequest(
                command.person_id, images, face_match_threshold=command.face_match_threshold,
                quality_control=command.quality_control, need_rotate_detection=command.need_rotate_detection), known_face_ids=known)
            face_ids.extend(response.suc_face_ids)
            if response.reconciled:
                fields["reconciled"] = True
                ret_codes.extend([0] * len(images) if response.suc_face_num == len(images) else [])
            else:
                ret_codes.extend(response.ret_code)
                fields.update(cloud_request_id=response.request_id, face_model_version=response.face_model_version)
        fields.update(faces_added=len(face_ids), face_ids=face_ids, ret_codes=ret_codes)

    def _judge(self, command: EnrollCommand, fields: dict[str, Any], timer: Timer, wanted: int, remaining: int, sent: int) -> Outcome:
        added = fields["faces_added"]
        if added >= command.faces:
            return self._outcome(fields, timer, "succeeded")
        status = "partial" if added else "failed"
        failed_codes = [c for c in fields["ret_codes"] if c != 0]
        if failed_codes:
            code, message = ret_code_error(failed_codes[0])
        elif wanted < command.faces:
            code, message = ErrorCode.PERSON_FACE_LIMIT, f"person {command.person_id} had room for {remaining} more face(s) of {command.faces} asked"
        elif sent < wanted:
            code, message = ErrorCode.LOW_QUALITY, f"only {sent} of {wanted} distinct usable captures before the timeout: hold still longer"
        else:
            code, message = ErrorCode.CLOUD_REJECTED, f"the cloud added {added} of {sent} images"
        return self._outcome(fields, timer, status, code, message)

    @staticmethod
    def _capture_failure(last: Analysis | None, refusal: str, command: EnrollCommand) -> tuple[ErrorCode, str]:
        if last is None:
            return ErrorCode.CAMERA_UNAVAILABLE, "the camera delivered no frame"
        if refusal:
            return ErrorCode.MULTIPLE_FACES, refusal
        if last.ok:
            return ErrorCode.LOW_QUALITY, "no usable capture before the timeout: hold still"
        code = ErrorCode(last.verdict)
        hint = {ErrorCode.NO_FACE: "no face seen", ErrorCode.FACE_TOO_SMALL: "face too small: move closer",
                ErrorCode.MULTIPLE_FACES: "several people in view: only one person please"}.get(code, "face not usable")
        return code, f"{hint} ({last.detail})" if last.detail and code != ErrorCode.NO_FACE else hint

    def _dry_run(self, fields: dict[str, Any], timer: Timer, picks: list[tuple[Candidate, Crop]], out_dir: Path) -> Outcome:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, (_, crop) in enumerate(picks):
            path = out_dir / f"crop-{fields['person_id']}-{index}.jpg"
            path.write_bytes(crop.jpeg)
            paths.append(str(path))
        fields.update(dry_run=True, crops=paths)
        return self._outcome(fields, timer, "succeeded")

    @staticmethod
    def _capture_json(candidate: Candidate) -> dict[str, Any]:
        data = candidate.report.as_json()
        return {"score": data["score"], "box": data["box"], "quality": data["quality"]}

    @staticmethod
    def _timings(timer: Timer) -> dict[str, Any]:
        return {"timings_ms": {"capture": round(timer.capture_ms), "detect": round(timer.detect_ms), "upload": round(timer.upload_ms)}}

    def _outcome(self, fields: dict[str, Any], timer: Timer, status: str, code: ErrorCode | None = None, message: str = "") -> Outcome:
        if code is not None:
            retryable = code in {ErrorCode.NO_FACE, ErrorCode.FACE_TOO_SMALL, ErrorCode.MULTIPLE_FACES, ErrorCode.LOW_QUALITY}
            fields["error"] = {"code": code.value, "message": message, "retryable": retryable}
        return Outcome({**fields, "status": status, **self._timings(timer)})
