"""The MQTT protocol of contract §2-3: topics, the enroll command schema, and result/progress payloads.

Parsing never raises on bad input: every payload becomes either a valid `EnrollCommand` or a
`Rejection` carrying the contract status and a message naming the field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.errors import ErrorCode

MAX_PAYLOAD_BYTES = 64 * 1024
COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
IAI_ID_PATTERN = r"^[A-Za-z0-9\-%@#&_]{1,64}$"


@dataclass(frozen=True)
class Topics:
    """Every topic of one device (`base` = `<topic_prefix>/<device_id>`)."""

    base: str

    @property
    def enroll(self) -> str:
        return f"{self.base}/enroll"

    @property
    def progress(self) -> str:
        return f"{self.base}/enroll/progress"

    @property
    def result(self) -> str:
        return f"{self.base}/enroll/result"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    @property
    def snapshot_result(self) -> str:
        return f"{self.base}/snapshot/result"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CreatePersonSpec(Strict):
    group_id: Annotated[str, StringConstraints(pattern=IAI_ID_PATTERN)]
    person_name: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    gender: int | None = Field(None, ge=0, le=2)


class EnrollCommand(Strict):
    """An enroll command (contract §3). Types are strict: "2" is not 2, 1 is not true."""

    id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    person_id: Annotated[str, StringConstraints(pattern=IAI_ID_PATTERN)]
    faces: int = Field(1, ge=1, le=4)
    capture_timeout_s: float | None = Field(None, ge=1, le=60)
    expires_at: float | None = Field(None, ge=0)
    face_match_threshold: float | None = Field(None, ge=0, le=100)
    quality_control: int | None = Field(None, ge=0, le=4)
    need_rotate_detection: bool | None = None
    create_person: CreatePersonSpec | None = None
    preview: bool = False
    # Command authentication (commands.require_signature): unix seconds and HMAC-SHA256 hex.
    ts: int | None = Field(None, ge=0)
    sig: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None


@dataclass(frozen=True)
class Rejection:
    """A command that will never run: `status` is `rejected` or `expired`."""

    id: str | None
    person_id: str | None
    status: str
    code: ErrorCode
    message: str


def _field_message(error: Any) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "command"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    if error["type"] == "missing":
        return f"{path}: required field is missing"
    if error["type"] == "string_pattern_mismatch":
        rules = {
            "id": "1-64 characters of A-Z a-z 0-9 . _ : -",
            "person_id": "1-64 characters of letters, digits and -%@#&_",
            "create_person.group_id": "1-64 characters of letters, digits and -%@#&_",
            "sig": "64 lower-case hex digits",
        }
        return f"{path}: must be {rules.get(path, 'in the documented format')}"
    return f"{path}: {error['msg']}"


def parse_command(payload: bytes, now: float | None = None) -> EnrollCommand | Rejection:
    """Validate one raw `enroll` payload."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND,
                         f"payload is {len(payload)} bytes: commands are at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND, f"payload is not UTF-8 (byte {exc.start})")
    try:
        data = json.loads(text)
    except RecursionError:
        return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND, "payload is nested too deeply")
    except ValueError as exc:
        return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND, f"payload is not JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND, f"payload must be a JSON object, got {type(data).__name__}")
    raw_id = data.get("id")
    command_id = raw_id if isinstance(raw_id, str) and _matches(COMMAND_ID_PATTERN, raw_id) else None
    raw_person = data.get("person_id")
    person_id = raw_person if isinstance(raw_person, str) and _matches(IAI_ID_PATTERN, raw_person) else None
    if command_id is None:
        why = "id: required field is missing" if raw_id is None else _field_message(
            {"loc": ("id",), "type": "string_pattern_mismatch" if isinstance(raw_id, str) else "type", "msg": "must be a string"})
        return Rejection(None, person_id, "rejected", ErrorCode.INVALID_COMMAND, why)
    try:
        command = EnrollCommand.model_validate(data)
    except ValidationError as exc:
        messages = [_field_message(e) for e in exc.errors(include_url=False)]
        return Rejection(command_id, person_id, "rejected", ErrorCode.INVALID_COMMAND, "; ".join(messages[:5]))
    if command.expires_at is not None and command.expires_at <= (time.time() if now is None else now):
        return Rejection(command_id, person_id, "expired", ErrorCode.EXPIRED, "the command expired before it was picked up")
    return command


def _matches(pattern: str, value: str) -> bool:
    return re.match(pattern, value) is not None  # `re` caches compiled patterns


def iso_now(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def empty_timings() -> dict[str, int]:
    return {"queue": 0, "capture": 0, "detect": 0, "upload": 0, "total": 0}


def base_result(command_id: str | None, device_id: str, person_id: str | None) -> dict[str, Any]:
    """A result with every always-present field (contract §3), to be filled in."""
    return {
        "id": command_id, "device_id": device_id, "person_id": person_id, "status": "failed",
        "faces_added": 0, "face_ids": [], "ret_codes": [], "timings_ms": empty_timings(),
        "replayed": False, "finished_at": iso_now(),
    }


def rejection_result(rejection: Rejection, device_id: str) -> dict[str, Any]:
    result = base_result(rejection.id, device_id, rejection.person_id)
    result["status"] = rejection.status
    result["error"] = {"code": rejection.code.value, "message": rejection.message, "retryable": False}
    return result


def error_result(command: EnrollCommand, device_id: str, status: str, code: ErrorCode, message: str, retryable: bool = False) -> dict[str, Any]:
    result = base_result(command.id, device_id, command.person_id)
    result["status"] = status
    result["error"] = {"code": code.value, "message": message, "retryable": retryable}
    return result


def progress_payload(command_id: str, state: str, detail: str) -> dict[str, Any]:
    return {"id": command_id, "state": state, "detail": detail, "at": iso_now()}


def canonical_signing_payload(command: dict[str, Any]) -> bytes:
    """What a command signature covers: the command without `sig`, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in command.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_command(command: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_signing_payload(command), hashlib.sha256).hexdigest()
