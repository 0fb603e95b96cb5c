"""The one typed result of a command, from the pipeline to the wire (docs/mqtt-api.md, "Results").

Every result is built here: `ResultError` decides `retryable` once, `Timings` has one meaning of
`total` (command received -> result finished), and `Result.to_json()` is the only serialisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from agent.errors import RETRYABLE_CODES, ErrorCode, FaceAgentError


class Status(str, Enum):
    """`status` of a result."""

    SUCCEEDED = "succeeded"  # every requested face was added
    PARTIAL = "partial"  # some were added
    FAILED = "failed"  # none was added
    REJECTED = "rejected"  # the command was never run (invalid, unauthenticated, queue full)
    EXPIRED = "expired"  # its expiry passed before it ran
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # the device could not establish what the cloud did: check the person before sending again
    DRY_RUN = "dry_run"  # a dry run: checked, nothing written; `error` is what a real run would have met


def iso_now(at: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z."""
    return datetime.fromtimestamp(time.time() if at is None else at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elapsed_ms(since: float, until: float) -> int:
    return max(0, round((until - since) * 1000))


@dataclass(frozen=True)
class ResultError:
    """The `error` object of a result."""

    code: ErrorCode
    message: str
    retryable: bool
    cloud_code: str | None = None

    @classmethod
    def of(cls, code: ErrorCode, message: str, cloud_code: str | None = None) -> ResultError:
        return cls(code, message, code in RETRYABLE_CODES, cloud_code)

    @classmethod
    def from_exception(cls, exc: FaceAgentError) -> ResultError:
        return cls(exc.code, exc.message, bool(exc.retryable), getattr(exc, "cloud_code", None))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code.value, "message": self.message, "retryable": self.retryable}
        if self.cloud_code:
            data["cloud_code"] = self.cloud_code
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultError:
        return cls(ErrorCode(data["code"]), str(data["message"]), bool(data["retryable"]), data.get("cloud_code"))


@dataclass(frozen=True)
class Timings:
    """Milliseconds: waiting in the queue, capturing, detecting (within capture), uploading; `total` = received -> finished."""

    queue: int = 0
    capture: int = 0
    detect: int = 0
    upload: int = 0
    total: int = 0

    def to_json(self) -> dict[str, int]:
        return {"queue": self.queue, "capture": self.capture, "detect": self.detect, "upload": self.upload, "total": self.total}


@dataclass(frozen=True)
class Result:
    """One command's result. Build with the constructor or `Result.rejected`; finish with `completed()`."""

    id: str | None
    device_id: str
    person_id: str | None
    status: Status
    face_ids: tuple[str, ...] = ()
    ret_codes: tuple[int, ...] = ()
    timings: Timings = field(default_factory=Timings)
    finished_at: str = ""
    replayed: bool = False
    error: ResultError | None = None
    captures: tuple[dict[str, Any], ...] | None = None  # per image sent: score, box, quality
    cloud_request_id: str | None = None
    face_model_version: str | None = None
    reconciled: bool = False  # the cloud's answer was lost; what it did was read back
    person_created: bool = False
    candidate_face_ids: tuple[str, ...] | None = None  # with status unknown: faces that may be this command's
    preview_jpeg_b64: tuple[str, ...] | None = None
    dry_run: bool = False
    crops: tuple[str, ...] | None = None  # dry run: files written
    would_send: int | None = None  # dry run: images a real run would send
    person_at_cloud: dict[str, Any] | None = None  # dry run: what the cloud said about the person (and its group)
    deleted_face_ids: tuple[str, ...] | None = None  # delete: faces this command deleted
    not_found_face_ids: tuple[str, ...] | None = None  # delete: faces asked for that the person no longer had
    payload_sha256: str | None = None  # an answer without an id: which payload it answers
    liveness: dict[str, Any] | None = None  # liveness.mode cloud: {mode, threshold, scores} of the images checked
    similar_person_id: str | None = None  # duplicate_person: the person the face already belongs to

    @property
    def faces_added(self) -> int:
        return len(self.face_ids)

    @classmethod
    def rejected(cls, command_id: str | None, device_id: str, person_id: str | None, error: ResultError,
                 status: Status = Status.REJECTED, payload_sha256: str | None = None) -> Result:
        return cls(command_id, device_id, person_id, status, error=error, finished_at=iso_now(), payload_sha256=payload_sha256)

    def completed(self, received_at: float, picked_at: float | None = None, now: float | None = None) -> Result:
        """This result finished now: queue time, total time and `finished_at` filled in."""
        now = time.time() if now is None else now
        queue = elapsed_ms(received_at, picked_at) if picked_at is not None else 0
        timings = replace(self.timings, queue=queue, total=elapsed_ms(received_at, now))
        return replace(self, timings=timings, finished_at=iso_now(now))

    def stored(self) -> Result:
        """The copy kept for replays: face crops never stay on the device after delivery."""
        return replace(self, preview_jpeg_b64=None)

    def replay(self) -> Result:
        return replace(self, replayed=True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "device_id": self.device_id, "person_id": self.person_id, "status": self.status.value,
            "faces_added": self.faces_added, "face_ids": list(self.face_ids), "ret_codes": list(self.ret_codes),
            "timings_ms": self.timings.to_json(), "replayed": self.replayed, "finished_at": self.finished_at or iso_now(),
        }
        if self.error is not None:
            data["error"] = self.error.to_json()
        optional: dict[str, Any] = {
            "captures": None if self.captures is None else list(self.captures), "cloud_request_id": self.cloud_request_id,
            "face_model_version": self.face_model_version, "reconciled": self.reconciled or None,
            "person_created": self.person_created or None,
            "candidate_face_ids": None if self.candidate_face_ids is None else list(self.candidate_face_ids),
            "preview_jpeg_b64": None if self.preview_jpeg_b64 is None else list(self.preview_jpeg_b64),
            "dry_run": self.dry_run or None, "crops": None if self.crops is None else list(self.crops),
            "would_send": self.would_send, "person_at_cloud": self.person_at_cloud,
            "deleted_face_ids": None if self.deleted_face_ids is None else list(self.deleted_face_ids),
            "not_found_face_ids": None if self.not_found_face_ids is None else list(self.not_found_face_ids),
            "payload_sha256": self.payload_sha256, "liveness": self.liveness, "similar_person_id": self.similar_person_id,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        timings = data.get("timings_ms") or {}

        def strings(key: str) -> tuple[str, ...] | None:
            return None if data.get(key) is None else tuple(str(v) for v in data[key])

        return cls(
            id=data.get("id"), device_id=str(data.get("device_id", "")), person_id=data.get("person_id"), status=Status(data["status"]),
            face_ids=tuple(str(f) for f in data.get("face_ids") or []), ret_codes=tuple(int(c) for c in data.get("ret_codes") or []),
            timings=Timings(**{k: int(timings.get(k, 0)) for k in ("queue", "capture", "detect", "upload", "total")}),
            finished_at=str(data.get("finished_at", "")), replayed=bool(data.get("replayed", False)),
            error=ResultError.from_json(data["error"]) if data.get("error") else None,
            captures=None if data.get("captures") is None else tuple(data["captures"]),
            cloud_request_id=data.get("cloud_request_id"), face_model_version=data.get("face_model_version"),
            reconciled=bool(data.get("reconciled", False)), person_created=bool(data.get("person_created", False)),
            candidate_face_ids=strings("candidate_face_ids"), preview_jpeg_b64=strings("preview_jpeg_b64"),
            dry_run=bool(data.get("dry_run", False)), crops=strings("crops"),
            would_send=None if data.get("would_send") is None else int(data["would_send"]), person_at_cloud=data.get("person_at_cloud"),
            deleted_face_ids=strings("deleted_face_ids"), not_found_face_ids=strings("not_found_face_ids"),
            payload_sha256=data.get("payload_sha256"), liveness=data.get("liveness"), similar_person_id=data.get("similar_person_id"),
        )


def progress_payload(command_id: str, state: str, detail: str) -> dict[str, Any]:
    """A `base/enroll/progress` message: state is queued, capturing or uploading; detail is operator guidance."""
    return {"id": command_id, "state": state, "detail": detail, "at": iso_now()}
