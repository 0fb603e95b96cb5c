"""Every IAI error code mapped to a typed error with `retryable`, the result's error code and an operator message.

`ambiguous` marks answers after which a non-idempotent request may or may not have been applied (a server
error can come after the change was made): CreateFace and CreatePerson are never sent again after one.
"""

from __future__ import annotations

from typing import Any

from agent.errors import ErrorCode, FaceAgentError


class CloudError(FaceAgentError):
    """An error answer from IAI (or no usable answer). `cloud_code` is IAI's code when there was one."""

    code = ErrorCode.CLOUD_REJECTED

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


class CloudAuthError(CloudError):
    code = ErrorCode.CLOUD_AUTH


class ClockSkewError(CloudAuthError):
    """AuthFailure.SignatureExpire: the device clock is more than 5 minutes off the service's."""

    retryable = True


class CloudRateLimited(CloudError):
    code = ErrorCode.CLOUD_RATE_LIMITED
    retryable = True


class CloudUnavailable(CloudError):
    """The service failed or could not be reached; retry later."""

    code = ErrorCode.CLOUD_UNAVAILABLE
    retryable = True


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


# Server-side failures: retried for reads; for CreateFace/CreatePerson they leave the outcome unknown.
RETRYABLE_SERVER = {
    "FailedOperation.ServerError", "FailedOperation.RequestTimeout", "FailedOperation.RpcFail", "FailedOperation.UnKnowError",
    "InternalError", "InternalError.ServerError", "ServiceUnavailable",
}
CONFLICT = {"FailedOperation.ConflictOperation", "FailedOperation.CreateFaceConcurrent"}

# Operator messages for codes that need more than IAI's own text. `{person}` and `{group}` are filled in.
MESSAGES = {
    "AuthFailure.SecretIdNotFound": "the SecretId is unknown: check the tencentcloud_secret_id credential",
    "AuthFailure.SignatureFailure": "the signature was refused: check the tencentcloud_secret_key credential",
    "AuthFailure.SignatureExpire": "the device clock is more than 5 minutes off: fix its time (NTP)",
    "AuthFailure.TokenFailure": "the session token was refused: renew the temporary credentials",
    "AuthFailure.InvalidSecretId": "the SecretId is malformed: check the tencentcloud_secret_id credential",
    "AuthFailure.UnauthorizedOperation": "the key may not call IAI: grant it the face recognition permission (CAM)",
    "UnauthorizedOperation": "the key may not call IAI: grant it the face recognition permission (CAM)",
    "InvalidParameterValue.PersonIdNotExist": "person {person} does not exist: create it first or send create_person",
    "InvalidParameterValue.PersonFaceNumExceed": "person {person} already has 5 faces: delete one before adding more",
    "InvalidParameterValue.PersonIdAlreadyExist": "person {person} already exists",
    "InvalidParameterValue.UploadFaceNumExceed": "more than 4 images in one call",
    "InvalidParameterValue.NoFaceInPhoto": "the cloud found no face in the image",
    "InvalidParameterValue.GroupIdNotExist": "group {group} does not exist: create it in the IAI console first",
    "InvalidParameterValue.GroupIdAlreadyExist": "group {group} already exists",
    "InvalidParameterValue.AccountFaceNumExceed": "the account's face quota is used up: delete faces or raise the quota",
    "InvalidParameterValue.GroupFaceNumExceed": "group {group} is full: use another group or raise its limit",
    "InvalidParameterValue.PersonIdIllegal": "person id {person} is not allowed: use letters, digits and -%@#&_",
    "InvalidParameterValue.PersonIdTooLong": "person id {person} is longer than 64 bytes",
    "InvalidParameterValue.PersonNameIllegal": "the person name is not allowed",
    "InvalidParameterValue.PersonNameTooLong": "the person name is longer than 60 characters",
    "InvalidParameterValue.PersonGenderIllegal": "gender must be 0, 1 or 2",
    "InvalidParameterValue.PersonExistInGroup": "person {person} is already in group {group}",
    "InvalidParameterValue.ImageEmpty": "no image was sent",
    "InvalidParameterValue.DeleteFaceNumExceed": "the person's last face cannot be deleted",
    "FailedOperation.ImageDecodeFailed": "the cloud could not decode the image",
    "FailedOperation.ImageDownloadError": "the cloud could not download the image URL",
    "FailedOperation.ImageFacedetectFailed": "the cloud could not detect a face in the image",
    "FailedOperation.ImageSizeExceed": "the image is too large for the cloud (5 MB base64, 4000 px JPEG)",
    "FailedOperation.GroupInDeletedState": "group {group} is being deleted",
    "RequestSizeLimitExceeded": "the request is larger than 10 MB: send fewer or smaller images",
    "ResourceUnavailable.InArrears": "the Tencent Cloud account is in arrears: top it up",
    "ResourceUnavailable.Freeze": "the Tencent Cloud account is frozen",
    "ResourceUnavailable.NotExist": "face recognition is not activated for this account: activate IAI in the console",
    "ResourceUnavailable.StopUsing": "face recognition is suspended for this account",
    "ResourceUnavailable.Delivering": "face recognition is still being activated for this account: try again later",
    "ResourceUnavailable.Recover": "face recognition is being restored for this account: try again later",
    "ResourceUnavailable.UnknownStatus": "the IAI service status of this account is unknown: check the console",
    "ResourcesSoldOut.ChargeStatusException": "the account's billing status does not allow IAI calls",
    "UnsupportedRegion": "IAI is not offered in the configured region: change cloud.region",
    "InvalidAction": "the action is not supported by this endpoint: check cloud.endpoint and cloud.version",
}


def error_from_code(
    cloud_code: str, cloud_message: str, request_id: str | None, person: str = "", group: str = ""
) -> CloudError:
    """The typed error for an IAI error envelope."""
    template = MESSAGES.get(cloud_code)
    message = template.format(person=person or "?", group=group or "?") if template else f"cloud refused the request: {cloud_message}"
    kwargs: dict[str, Any] = {"cloud_code": cloud_code, "request_id": request_id}
    if cloud_code == "AuthFailure.SignatureExpire":
        return ClockSkewError(message, **kwargs)
    if cloud_code == "AuthFailure.TokenFailure":
        return TokenExpired(message, **kwargs)
    if cloud_code.startswith(("AuthFailure", "UnauthorizedOperation")):
        return CloudAuthError(message, **kwargs)
    if cloud_code.startswith("RequestLimitExceeded") or cloud_code == "FailedOperation.RequestLimitExceeded":
        return CloudRateLimited("the cloud rate limit was exceeded: fewer requests per second across the fleet", **kwargs)
    if cloud_code in CONFLICT:
        return ConflictError(f"another enrollment for person {person or '?'} was running at the cloud", **kwargs)
    if cloud_code in RETRYABLE_SERVER:
        return CloudUnavailable(f"the cloud failed ({cloud_code}): try again later", ambiguous=True, **kwargs)
    if cloud_code == "InvalidParameterValue.PersonIdNotExist":
        return PersonNotFound(message, **kwargs)
    if cloud_code == "InvalidParameterValue.PersonFaceNumExceed":
        return PersonFaceLimit(message, **kwargs)
    if cloud_code == "InvalidParameterValue.PersonIdAlreadyExist":
        return PersonAlreadyExists(message, **kwargs)
    if cloud_code in {"InvalidParameterValue.NoFaceInPhoto", "FailedOperation.ImageFacedetectFailed"}:
        return CloudRejected(message, code=ErrorCode.NO_FACE, **kwargs)
    return CloudRejected(message, **kwargs)


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
