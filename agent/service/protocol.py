"""The MQTT protocol (docs/mqtt-api.md): topics, command schemas, command signatures, and the checks of what arrives.

Nothing here trusts its input: every payload becomes a valid command or a `Rejection` whose message
names the field, and attacker-chosen text (field names, topics) is made printable before it is echoed.
Light on purpose (pydantic and the standard library only): `faceagent ctl` imports it on a laptop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from agent.config.schema import DEVICE_ID_PATTERN  # one rule for the config and for commands
from agent.errors import ErrorCode

MAX_PAYLOAD_BYTES = 64 * 1024  # a command is at most this; larger ones are answered `rejected`
# Announced to the broker as MQTT 5 Maximum Packet Size: it never forwards more, so memory stays bounded
# whatever anyone publishes (3.1.1 brokers need `message_size_limit`, see docs/mqtt-api.md).
MAX_PACKET_BYTES = 4 * MAX_PAYLOAD_BYTES
MAX_TS = 2**33  # unix seconds, year 2242: keeps integers small and comparisons cheap
COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
IAI_ID_PATTERN = r"^[A-Za-z0-9\-%@#&_]{1,64}$"
SIG_PATTERN = r"^[0-9a-f]{64}$"
CORRELATION_PATTERN = r"^[\x20-\x7e]{1,128}$"  # printable ASCII: echoed in results and logs as it came
MAX_TOPIC_BYTES = 1024
FACE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # IAI FaceIds are decimal strings; this is looser and still safe to echo
MAX_DELETE_FACES = 5  # a person holds at most 5 faces


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

    @property
    def snapshot_jpeg(self) -> str:
        """The latest annotated snapshot as a raw JPEG (Home Assistant's image entity reads it)."""
        return f"{self.base}/snapshot/jpeg"

    @property
    def delete(self) -> str:
        return f"{self.base}/delete"

    @property
    def delete_result(self) -> str:
        return f"{self.base}/delete/result"

    @property
    def ha_enroll(self) -> str:
        """A person id typed into Home Assistant (only with home_assistant.allow_enroll)."""
        return f"{self.base}/ha/enroll"

    def result_for(self, kind: str) -> str:
        """The result topic of a command of this kind (`enroll` or `delete`)."""
        return self.delete_result if kind == "delete" else self.result


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CreatePersonSpec(Strict):
    group_id: Annotated[str, StringConstraints(pattern=IAI_ID_PATTERN)]
    person_name: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    gender: int | None = Field(None, ge=0, le=2)
    unique_person_control: int | None = Field(None, ge=0, le=4)  # None: the device's enroll.unique_person_control


class Signed(Strict):
    """Fields of every command that can be signed (commands.require_signature)."""

    device_id: Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)] | None = None  # the device it is meant for
    ts: int | None = Field(None, ge=0, le=MAX_TS)  # unix seconds when it was signed
    sig: Annotated[str, StringConstraints(pattern=SIG_PATTERN)] | None = None  # hex HMAC-SHA256, see signing_payload()


class Routed(Signed):
    """Where the answer goes, in the command itself: MQTT 5's Response Topic and Correlation Data do not survive
    MQTT 3.1.1 or most bridges, and the payload is what the signature covers. Checked by the intake
    (`response_topic_problem`), which prefers these to the MQTT 5 properties."""

    reply_to: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOPIC_BYTES)] | None = None
    correlation: Annotated[str, StringConstraints(pattern=CORRELATION_PATTERN)] | None = None


class EnrollCommand(Routed):
    """An enroll command. Types are strict: "2" is not 2, 1 is not true."""

    id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    person_id: Annotated[str, StringConstraints(pattern=IAI_ID_PATTERN)]
    faces: int = Field(1, ge=1, le=4)
    capture_timeout_s: float | None = Field(None, ge=1, le=60)
    expires_at: float | None = Field(None, ge=0, le=MAX_TS)
    face_match_threshold: float | None = Field(None, ge=0, le=100)
    quality_control: int | None = Field(None, ge=0, le=4)
    need_rotate_detection: bool | None = None
    create_person: CreatePersonSpec | None = None
    preview: bool = False
    dry_run: bool = False  # capture, check and read the person at the cloud; write nothing


class DeleteCommand(Routed):
    """Undo: delete the faces an earlier enroll command added (`enrollment_id`), or the given `face_ids`, of one person."""

    id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    person_id: Annotated[str, StringConstraints(pattern=IAI_ID_PATTERN)]
    enrollment_id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)] | None = None
    face_ids: list[Annotated[str, StringConstraints(pattern=FACE_ID_PATTERN)]] | None = Field(None, min_length=1, max_length=MAX_DELETE_FACES)
    expires_at: float | None = Field(None, ge=0, le=MAX_TS)

    @model_validator(mode="after")
    def _one_target(self) -> DeleteCommand:
        if (self.enrollment_id is None) == (self.face_ids is None):
            raise ValueError("enrollment_id: give exactly one of enrollment_id and face_ids")
        return self


class SnapshotRequest(Signed):
    """A request for one annotated frame."""

    id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)] | None = None


@dataclass(frozen=True)
class Rejection:
    """A command that will never run: `status` is `rejected` or `expired`."""

    id: str | None
    person_id: str | None
    status: str
    code: ErrorCode
    message: str


def printable(text: object, limit: int = 80) -> str:
    """`text` safe to echo into results and logs: control characters escaped, length bounded."""
    out = "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in str(text)[: limit * 2])
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _matches(pattern: str, value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None  # `re` caches compiled patterns


_RULES = {
    "id": "1-64 characters of A-Z a-z 0-9 . _ : -",
    "person_id": "1-64 characters of letters, digits and -%@#&_",
    "create_person.group_id": "1-64 characters of letters, digits and -%@#&_",
    "device_id": "1-64 characters of letters, digits and . _ -",
    "sig": "64 lower-case hex digits",
    "enrollment_id": "1-64 characters of A-Z a-z 0-9 . _ : -",
    "face_ids": "1-64 characters of letters, digits, _ and -",
    "correlation": "1-128 printable ASCII characters",
}


def _field_message(error: Any) -> str:
    path = printable(".".join(str(p) for p in error["loc"]) or "command", 64)
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    if error["type"] == "missing":
        return f"{path}: required field is missing"
    if error["type"] == "string_pattern_mismatch":
        return f"{path}: must be {_RULES.get(path, _RULES.get(path.split('.')[0], 'in the documented format'))}"
    if error["type"] == "value_error" and not error["loc"]:  # a rule across fields states its own field
        return printable(str(error["msg"]).removeprefix("Value error, "), 160)
    return f"{path}: {printable(error['msg'], 120)}"


def _reject(command_id: str | None, person_id: str | None, message: str, status: str = "rejected",
            code: ErrorCode = ErrorCode.INVALID_COMMAND) -> Rejection:
    return Rejection(command_id, person_id, status, code, message)


class _NotStrictJson(ValueError):
    """Python's json accepts more than JSON (NaN, Infinity) and fails on huge numbers with advice meant for programmers."""


MAX_INT_DIGITS = 30


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotStrictJson(f"a number has {len(digits.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJson(f"the number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str) -> float:
    raise _NotStrictJson(f"{name} is not a JSON value")


def _salvage_ids(text: str) -> tuple[str | None, str | None]:
    """The id and person_id of a payload refused for its numbers, so the answer can name the command."""
    try:
        data = json.loads(text, parse_int=lambda d: None if len(d) > MAX_INT_DIGITS else int(d), parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return None, None
    return command_ids(data) if isinstance(data, dict) else (None, None)


def decode_payload(payload: bytes) -> dict[str, Any] | Rejection:
    """A payload as a JSON object, or why it is not one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _reject(None, None, f"payload is {len(payload)} bytes: commands are at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reject(None, None, f"payload is not UTF-8 (byte {exc.start})")
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except _NotStrictJson as exc:
        return _reject(*_salvage_ids(text), f"payload: {exc}")
    except RecursionError:
        return _reject(None, None, "payload is nested too deeply")
    except ValueError as exc:
        return _reject(None, None, f"payload is not JSON: {printable(exc, 120)}")
    if not isinstance(data, dict):
        return _reject(None, None, f"payload must be a JSON object, got {type(data).__name__}")
    try:  # JSON may spell a lone UTF-16 surrogate (\ud800), which is not Unicode text: nothing could echo or sign it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return _reject(*command_ids(data), "payload: a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    except RecursionError:
        return _reject(None, None, "payload is nested too deeply")
    return data


def command_ids(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(id, person_id) when they are well-formed: what a rejection may echo."""
    command_id = data.get("id") if _matches(COMMAND_ID_PATTERN, data.get("id")) else None
    person_id = data.get("person_id") if _matches(IAI_ID_PATTERN, data.get("person_id")) else None
    return command_id, person_id


def parse_command(payload: bytes, now: float | None = None) -> EnrollCommand | Rejection:
    """Validate one raw `enroll` payload (signatures are checked separately, before this)."""
    data = decode_payload(payload)
    return data if isinstance(data, Rejection) else validate_command(data, now)


def validate_command(data: dict[str, Any], now: float | None = None) -> EnrollCommand | Rejection:
    """A raw enroll command, or a `Rejection` naming the field."""
    return _validate(data, EnrollCommand, now)


def validate_delete(data: dict[str, Any], now: float | None = None) -> DeleteCommand | Rejection:
    """A raw delete command, or a `Rejection` naming the field."""
    return _validate(data, DeleteCommand, now)


CommandT = TypeVar("CommandT", EnrollCommand, DeleteCommand)


def _validate(data: dict[str, Any], schema: type[CommandT], now: float | None) -> CommandT | Rejection:
    command_id, person_id = command_ids(data)
    if command_id is None:
        raw_id = data.get("id")
        why = "id: required field is missing" if raw_id is None else (
            _field_message({"loc": ("id",), "type": "string_pattern_mismatch"}) if isinstance(raw_id, str) else "id: must be a string")
        return _reject(None, person_id, why)
    try:
        command = schema.model_validate(data)
    except ValidationError as exc:
        return _reject(command_id, person_id, "; ".join(_field_message(e) for e in exc.errors(include_url=False)[:5]))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # pydantic lets a few of these through
        return _reject(command_id, person_id, f"command: {printable(exc, 120)}")
    if command.expires_at is not None and command.expires_at <= (time.time() if now is None else now):
        return _reject(command_id, person_id, "the command expired before it was picked up", "expired", ErrorCode.EXPIRED)
    return command


def validate_snapshot(data: dict[str, Any]) -> SnapshotRequest | Rejection:
    try:
        return SnapshotRequest.model_validate(data)
    except ValidationError as exc:
        return _reject(command_ids(data)[0], None, "; ".join(_field_message(e) for e in exc.errors(include_url=False)[:5]))


# --- command signatures ------------------------------------------------------------------------------------


def signing_payload(command: dict[str, Any]) -> bytes:
    """What a signature covers: the command without `sig`, keys sorted, no spaces, UTF-8 (docs/mqtt-api.md)."""
    body = {k: v for k, v in command.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_command(command: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, signing_payload(command), hashlib.sha256).hexdigest()


def signature_problem(data: dict[str, Any], key: bytes | None, device_id: str, max_skew_s: float, now: float | None = None) -> str | None:
    """Why a raw command's signature is not acceptable on this device, or None. Checked before anything is looked up."""
    if key is None:
        return "sig: this device has no command_hmac_key to check signatures"
    sig, ts, target = data.get("sig"), data.get("ts"), data.get("device_id")
    if sig is None and ts is None and target is None:
        return "sig: signed commands are required on this device (fields device_id, ts and sig)"
    missing = [name for name, value in (("device_id", target), ("ts", ts), ("sig", sig)) if value is None]
    if missing:
        return f"{missing[0]}: a signed command carries device_id, ts and sig together; missing: {', '.join(missing)}"
    if not _matches(SIG_PATTERN, sig):
        return f"sig: must be {_RULES['sig']}"
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= MAX_TS:
        return "ts: must be unix seconds (an integer)"
    if not hmac.compare_digest(sign_command(data, key), str(sig)):
        return "sig: the signature does not match the command"
    if target != device_id:
        return f"device_id: the command is signed for device {printable(target, 64)}, not this one"
    if abs((time.time() if now is None else now) - ts) > max_skew_s:
        return f"ts: the signature timestamp is more than {max_skew_s:g} s from the device clock"
    return None


def correlation_text(correlation: bytes | None) -> str | None:
    """Correlation Data as the text a result carries, when it is printable ASCII (binary data stays in the MQTT 5 property)."""
    if not correlation:
        return None
    text = correlation.decode("ascii", errors="replace")
    return text if re.fullmatch(CORRELATION_PATTERN, text) else None


def response_topic_problem(topic: str, topic_prefix: str, *reserved: str) -> str | None:
    """Why an MQTT 5 Response Topic cannot be published to, or None.

    A Response Topic is chosen by whoever sent the command: it must be a plain topic (no wildcards,
    no `$`), and outside the fleet's own tree so a command cannot make one device publish into
    another device's command topics — nor under the other `reserved` prefixes (Home Assistant's
    discovery prefix, where a result would become an entity's configuration).
    """
    if not topic or len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "response topic: must be 1-1024 bytes"
    if any(c in topic for c in "#+\0") or any(unicodedata.category(c) == "Cc" for c in topic):
        return f"response topic {printable(topic)!r}: wildcards and control characters are not allowed"
    if topic.startswith("$"):
        return f"response topic {printable(topic)!r}: $-topics are reserved by the broker"
    for prefix in (topic_prefix, *reserved):
        if topic == prefix or topic.startswith(prefix + "/"):
            return f"response topic {printable(topic)!r}: must be outside {prefix}/ (reply to your own topic)"
    return None
