"""The typed result of a command, one type per kind, from the pipeline to the wire (docs/mqtt-api.md, "Results").

Every result is built here: `ResultError` decides `retryable` once, `Timings` has one meaning of
`total` (command received -> result finished), and `Result.to_json()`, generated from the fields of the
kind, is the only serialisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

from agent.errors import RETRYABLE_CODES, ErrorCode, FaceAgentError


class Status(str, Enum):
    """`status` of a result."""

    SUCCEEDED = "succeeded"  # every requested face was added
    PARTIAL = "partial"  # some were added
    FAILED = "failed"  # none was added
    REJECTED = "rejected"  # the command was never run (invalid, unauthenticated, queue full)
    EXPIRED = "expired"  # its expiry passed before it ran
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


def _json(name: str | None = None, emit: str = "always", parse: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """How a field is written: under `name`, `always` or only when `set` (not None) or `true`; `parse` reads it back."""
    return {"json": name, "emit": emit, "parse": parse}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _optional_strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _strings(value)


def _encode(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (Timings, ResultError)):
        return value.to_json()
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class Result:
    """What every answer carries. A command's result is one of the kinds below; finish it with `completed()`.

    The JSON (docs/mqtt-api.md, "Result") is generated from the fields: each says its name on the wire and when it
    is written (`_json`), so a kind's fields are all there is to it.
    """

    id: str | None
    device_id: str
    person_id: str | None
    status: Status = field(metadata=_json(parse=Status))
    face_ids: tuple[str, ...] = field(default=(), metadata=_json(parse=_strings))
    ret_codes: tuple[int, ...] = field(default=(), metadata=_json(parse=lambda v: tuple(int(c) for c in v)))
    timings: Timings = field(default_factory=Timings, metadata=_json("timings_ms", parse=lambda v: Timings(
        **{k: int(v.get(k, 0)) for k in ("queue", "capture", "detect", "upload", "total")})))
    replayed: bool = field(default=False, metadata=_json(parse=bool))
    finished_at: str = field(default="", metadata=_json(parse=str))
    error: ResultError | None = field(default=None, metadata=_json(emit="set", parse=ResultError.from_json))

    @property
    def faces_added(self) -> int:
        return len(self.face_ids)

    def completed(self: R, received_at: float, picked_at: float | None = None, now: float | None = None) -> R:
        """This result finished now: queue time, total time and `finished_at` filled in."""
        now = time.time() if now is None else now
        queue = elapsed_ms(received_at, picked_at) if picked_at is not None else 0
        timings = replace(self.timings, queue=queue, total=elapsed_ms(received_at, now))
        return replace(self, timings=timings, finished_at=iso_now(now))

    def stored(self: R) -> R:
        """The copy kept for replays: face crops never stay on the device after delivery (the kinds with previews drop them)."""
        return self

    def replay(self: R) -> R:
        return replace(self, replayed=True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value, emit = getattr(self, f.name), f.metadata.get("emit", "always")
            if f.name == "finished_at":
                value = value or iso_now()
            if emit == "always" or (emit == "set" and value is not None) or (emit == "true" and value):
                data[f.metadata.get("json") or f.name] = _encode(value)
            if f.name == "status":
                data["faces_added"] = self.faces_added
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnyResult:
        """A stored result as its kind: a dry run says so, a delete lists `deleted_face_ids`, a command never run is
        `rejected` or `expired`; the rest are enrollments (a failure without any kind's fields reads the same either way)."""
        kind: type[Result] = (DryRunResult if data.get("dry_run") else DeleteResult if "deleted_face_ids" in data
                              else RejectedResult if data.get("status") in (Status.REJECTED, Status.EXPIRED) else EnrollResult)
        values: dict[str, Any] = {"device_id": str(data.get("device_id", ""))}
        for f in fields(kind):
            key = f.metadata.get("json") or f.name
            if f.name in values or data.get(key) is None:
                continue
            parse = f.metadata.get("parse")
            values[f.name] = parse(data[key]) if parse else data[key]
        return kind(**{"id": None, "person_id": None, **values})  # type: ignore[return-value]


@dataclass(frozen=True)
class EnrollResult(Result):
    """An enrollment that ran: what was captured, what the cloud did."""

    captures: tuple[dict[str, Any], ...] | None = field(default=None, metadata=_json(emit="set", parse=tuple))  # per image sent
    cloud_request_id: str | None = field(default=None, metadata=_json(emit="set"))
    face_model_version: str | None = field(default=None, metadata=_json(emit="set"))
    reconciled: bool = field(default=False, metadata=_json(emit="true", parse=bool))  # the answer was lost; what the cloud did was read back
    person_created: bool = field(default=False, metadata=_json(emit="true", parse=bool))
    candidate_face_ids: tuple[str, ...] | None = field(  # with status unknown: faces that may be this command's
        default=None, metadata=_json(emit="set", parse=_optional_strings))
    preview_jpeg_b64: tuple[str, ...] | None = field(default=None, metadata=_json(emit="set", parse=_optional_strings))
    liveness: dict[str, Any] | None = field(default=None, metadata=_json(emit="set"))  # {mode, threshold, scores} of the images checked
    similar_person_id: str | None = field(default=None, metadata=_json(emit="set"))  # duplicate_person: whose face it already is

    def stored(self) -> EnrollResult:
        return replace(self, preview_jpeg_b64=None)


@dataclass(frozen=True)
class DryRunResult(Result):
    """A dry run: checked, nothing written; `error` is what a real run would have met."""

    status: Status = field(default=Status.DRY_RUN, metadata=_json(parse=Status))
    captures: tuple[dict[str, Any], ...] | None = field(default=None, metadata=_json(emit="set", parse=tuple))
    cloud_request_id: str | None = field(default=None, metadata=_json(emit="set"))
    preview_jpeg_b64: tuple[str, ...] | None = field(default=None, metadata=_json(emit="set", parse=_optional_strings))
    dry_run: bool = field(default=True, metadata=_json(emit="true", parse=bool))
    crops: tuple[str, ...] | None = field(default=None, metadata=_json(emit="set", parse=_optional_strings))  # files written
    would_send: int | None = field(default=None, metadata=_json(emit="set", parse=int))  # images a real run would send
    person_at_cloud: dict[str, Any] | None = field(default=None, metadata=_json(emit="set"))  # the person (and its group) at the cloud
    liveness: dict[str, Any] | None = field(default=None, metadata=_json(emit="set"))  # {mode, threshold, scores} of the images checked

    def stored(self) -> DryRunResult:
        return replace(self, preview_jpeg_b64=None)


@dataclass(frozen=True)
class DeleteResult(Result):
    """A delete (undo): the faces it deleted, and those the person no longer had."""

    cloud_request_id: str | None = field(default=None, metadata=_json(emit="set"))
    deleted_face_ids: tuple[str, ...] | None = field(default=None, metadata=_json(emit="set", parse=_optional_strings))
    not_found_face_ids: tuple[str, ...] | None = field(default=None, metadata=_json(emit="set", parse=_optional_strings))


@dataclass(frozen=True)
class RejectedResult(Result):
    """A command never run (invalid, unauthenticated, queue full, expired); without an id, which payload it answers."""

    payload_sha256: str | None = field(default=None, metadata=_json(emit="set"))

    @classmethod
    def of(cls, command_id: str | None, device_id: str, person_id: str | None, error: ResultError,
           status: Status = Status.REJECTED, payload_sha256: str | None = None) -> RejectedResult:
        return cls(command_id, device_id, person_id, status, error=error, finished_at=iso_now(), payload_sha256=payload_sha256)


AnyResult = EnrollResult | DryRunResult | DeleteResult | RejectedResult
R = TypeVar("R", bound=Result)


def progress_payload(command_id: str, state: str, detail: str) -> dict[str, Any]:
    """A `base/enroll/progress` message: state is queued, capturing or uploading; detail is operator guidance."""
    return {"id": command_id, "state": state, "detail": detail, "at": iso_now()}
