"""Typed errors shared by every layer, the result error codes (docs/mqtt-api.md) and the process exit codes."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """`error.code` values of a result (docs/mqtt-api.md). Operators' automation depends on them: keep them exactly."""

    INVALID_COMMAND = "invalid_command"
    EXPIRED = "expired"
    QUEUE_FULL = "queue_full"
    CANCELLED = "cancelled"
    CAMERA_UNAVAILABLE = "camera_unavailable"
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    MULTIPLE_FACES = "multiple_faces"
    LOW_QUALITY = "low_quality"
    PERSON_NOT_FOUND = "person_not_found"
    PERSON_FACE_LIMIT = "person_face_limit"
    FACE_MISMATCH = "face_mismatch"
    CLOUD_QUALITY = "cloud_quality"
    CLOUD_AUTH = "cloud_auth"
    CLOUD_RATE_LIMITED = "cloud_rate_limited"
    CLOUD_UNAVAILABLE = "cloud_unavailable"
    CLOUD_REJECTED = "cloud_rejected"
    OUTCOME_UNKNOWN = "outcome_unknown"
    LAST_FACE = "last_face"  # a delete would leave a person without a face, which IAI refuses
    SPOOF_SUSPECTED = "spoof_suspected"  # the cloud's liveness score was below liveness.threshold: nothing written
    DUPLICATE_PERSON = "duplicate_person"  # the face already belongs to another person (UniquePersonControl): nothing created
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INTERNAL = "internal"


# Codes after which the same command, sent again unchanged, may well succeed (a new capture, a recovered
# cloud or device): "the operator may try again". The one place `retryable` is decided; an error may override
# it for a good reason. Whether the cloud client may resend the same request bytes is another question,
# answered by `CloudError.resend` (agent/iai/errors.py): a refusal of what an image shows is retryable here
# (a new capture may pass) and never resent there (the same bytes get the same answer, billed again).
# spoof_suspected and duplicate_person are not retryable: the same face gets the same answer, and automation
# retrying a suspected spoof would only give an attacker more attempts.
RETRYABLE_CODES = frozenset({
    ErrorCode.QUEUE_FULL, ErrorCode.CAMERA_UNAVAILABLE, ErrorCode.NO_FACE, ErrorCode.FACE_TOO_SMALL, ErrorCode.MULTIPLE_FACES,
    ErrorCode.LOW_QUALITY, ErrorCode.CLOUD_QUALITY, ErrorCode.CLOUD_RATE_LIMITED, ErrorCode.CLOUD_UNAVAILABLE,
    ErrorCode.STORAGE_UNAVAILABLE,
})


class ExitCode:
    """Process exit codes (README, "Command line")."""

    OK = 0
    FAILED = 1
    USAGE = 2
    TIMEOUT = 3
    CONFIG = 78  # EX_CONFIG; systemd's RestartPreventExitStatus=78 stops a restart loop on bad config


class FaceAgentError(Exception):
    """Base of every error the agent raises on purpose.

    `code` is the result error code it maps to, `retryable` whether the same request may succeed
    later unchanged, and the message is one sentence an operator can act on.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool | None = None  # None: decided by the code (RETRYABLE_CODES)

    def __init__(self, message: str, *, code: ErrorCode | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        elif type(self).retryable is None:
            self.retryable = self.code in RETRYABLE_CODES


class ConfigError(FaceAgentError):
    """The configuration is invalid; `problems` lists every `(dotted.key.path, reason)` found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{path}: {reason}" for path, reason in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines), code=ErrorCode.INTERNAL)


class CameraUnavailable(FaceAgentError):
    """The camera cannot be opened or stopped delivering frames."""

    code = ErrorCode.CAMERA_UNAVAILABLE
    retryable = True


class ImageUnreadable(FaceAgentError):
    """An image file or buffer could not be read or decoded."""

    code = ErrorCode.INVALID_COMMAND


class ModelError(FaceAgentError):
    """The detector model file is missing, corrupt, or does not have the expected inputs/outputs."""
