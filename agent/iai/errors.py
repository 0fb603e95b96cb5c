"""IAI's error answers as typed errors with `retryable`, the result's error code and an operator message (error_codes.py).

Two separate notions: `retryable` (inherited from FaceAgentError) says whether the *operator* may try the command
again (a new capture may pass); `resend` says whether the *transport* may send the same request bytes again
(throttled, unreachable, a transient service failure). A refusal of an image's content (no face, too small,
quality) is retryable but never resent: the same bytes would get the same answer, billed again.

`ambiguous` marks answers after which a non-idempotent request may or may not have been applied (a server
error can come after the change was made): CreateFace and CreatePerson are never sent again after one.
"""

from __future__ import annotations

from typing import Any

from agent.errors import ErrorCode, FaceAgentError
from agent.iai.error_codes import ACCOUNT_STATUS, DECISIONS, PREFIX_KINDS


class CloudError(FaceAgentError):
    """An error answer from IAI (or no usable answer). `cloud_code` is IAI's code when there was one."""

    code = ErrorCode.CLOUD_REJECTED
    resend = False  # whether the transport may send the same request again; only the transient kinds below may

    def __init__(
        self,
        message: str,
        *,
        cloud_code: str | None = None,
        request_id: str | None = None,
        code: ErrorCode | None = None,
        retryable: bool | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.cloud_code = cloud_code
        self.request_id = request_id
        self.ambiguous = ambiguous
        self.account_status: str | None = None  # what the error says about the account (auth_failed, in_arrears, ...)


class CloudAuthError(CloudError):
    code = ErrorCode.CLOUD_AUTH


class ClockSkewError(CloudAuthError):
    """AuthFailure.SignatureExpire: the device clock is more than 5 minutes off the service's (re-signed once)."""

    retryable = True
    resend = True


class CloudRateLimited(CloudError):
    code = ErrorCode.CLOUD_RATE_LIMITED
    retryable = True
    resend = True


class CloudUnavailable(CloudError):
    """The service failed or could not be reached; retry later."""

    code = ErrorCode.CLOUD_UNAVAILABLE
    retryable = True
    resend = True


class ConflictError(CloudUnavailable):
    """Another call on the same person is running (FailedOperation.ConflictOperation / CreateFaceConcurrent)."""


class OutcomeUnknown(CloudUnavailable):
    """The request may or may not have been applied (timeout after sending, dropped connection, 5xx, a server error)."""


class CloudTlsError(CloudError):
    """The cloud's TLS certificate was refused: a configuration (or device clock) problem, not an outage."""

    code = ErrorCode.CLOUD_UNAVAILABLE
    retryable = False


class TokenExpired(CloudAuthError):
    """AuthFailure.TokenFailure: temporary credentials expired; they are read again from their source once."""


class PersonNotFound(CloudError):
    code = ErrorCode.PERSON_NOT_FOUND


class PersonFaceLimit(CloudError):
    code = ErrorCode.PERSON_FACE_LIMIT


class PersonAlreadyExists(CloudError):
    pass


class CloudRejected(CloudError):
    code = ErrorCode.CLOUD_REJECTED


class DuplicatePerson(CloudError):
    """CreatePerson with UniquePersonControl answered success with `SimilarPersonId` set: the face already belongs to
    that person and nothing was created."""

    code = ErrorCode.DUPLICATE_PERSON

    def __init__(self, person_id: str, similar_person_id: str, request_id: str | None) -> None:
        super().__init__(f"the face already belongs to person {similar_person_id}: person {person_id} was not created; to add "
                         f"this face to that person, enroll with person_id {similar_person_id} and no create_person",
                         request_id=request_id)
        self.similar_person_id = similar_person_id


class SpoofSuspected(CloudError):
    """DetectLiveFaceAccurate scored an image below liveness.threshold: a photo or a screen held to the camera."""

    code = ErrorCode.SPOOF_SUSPECTED

    def __init__(self, score: float, threshold: float, request_id: str | None) -> None:
        super().__init__(f"liveness score {score:g} is below the threshold {threshold:g}: a photo or a screen held to the camera? "
                         "Nothing was written; the person must stand in front of the camera", request_id=request_id)
        self.score = score
        self.scores: list[float] = [score]  # every image's score up to and including this one


def decision(cloud_code: str) -> tuple[str, str]:
    """(kind, operator message template) of a code: its entry in DECISIONS, else the nearest listed prefix's kind."""
    if cloud_code in DECISIONS:
        return DECISIONS[cloud_code]
    for prefix, kind in PREFIX_KINDS:
        if cloud_code.startswith(prefix):
            return kind, ""
    return "rejected", ""


def error_from_code(
    cloud_code: str, cloud_message: str, request_id: str | None, person: str = "", group: str = ""
) -> CloudError:
    """The typed error for an IAI error envelope."""
    kind, template = decision(cloud_code)
    message = template.format(person=person or "?", group=group or "?") if template else f"cloud refused the request: {cloud_message}"
    args: dict[str, Any] = {"cloud_code": cloud_code, "request_id": request_id}
    error: CloudError
    if kind == "clock":
        error = ClockSkewError(message, **args)
    elif kind == "token":
        error = TokenExpired(message, **args)
    elif kind == "auth":
        error = CloudAuthError(message, **args)
    elif kind == "rate":
        error = CloudRateLimited("the cloud rate limit was exceeded: fewer requests per second across the fleet", **args)
    elif kind == "conflict":
        error = ConflictError(f"another change to person {person or '?'} was running at the cloud", **args)
    elif kind == "server":
        error = CloudUnavailable(f"the cloud failed ({cloud_code}): try again later", ambiguous=True, **args)
    elif kind == "later":
        error = CloudUnavailable(message, **args)
    elif kind == "person_missing":
        error = PersonNotFound(message, **args)
    elif kind == "face_limit":
        error = PersonFaceLimit(message, **args)
    elif kind == "person_exists":
        error = PersonAlreadyExists(message, **args)
    else:
        code = {"no_face": ErrorCode.NO_FACE, "too_small": ErrorCode.FACE_TOO_SMALL, "quality": ErrorCode.CLOUD_QUALITY}.get(kind)
        error = CloudRejected(message, code=code, **args)
    if cloud_code not in DECISIONS and isinstance(error, CloudRejected):
        error.ambiguous = True  # a code no list names says nothing of whether a write was applied: it is read back
    error.account_status = ACCOUNT_STATUS.get(kind)
    return error


# Per-image RetCode of CreateFace (docs/iai.md) -> (result error code, operator message).
RET_CODES = {
    -1101: (ErrorCode.NO_FACE, "the cloud found no face in the image"),
    -1102: (ErrorCode.CLOUD_REJECTED, "the cloud could not decode the image"),
    -1109: (ErrorCode.CLOUD_REJECTED, "the image is too large or too small for the cloud"),
    -1601: (ErrorCode.CLOUD_QUALITY, "the face failed the cloud's quality control: better light, face the camera, hold still"),
    -1604: (ErrorCode.FACE_MISMATCH, "the face does not match the person's existing faces: is this the right person?"),
}


def ret_code_error(ret_code: int) -> tuple[ErrorCode, str]:
    return RET_CODES.get(ret_code, (ErrorCode.CLOUD_REJECTED, f"the cloud refused the image (RetCode {ret_code})"))
