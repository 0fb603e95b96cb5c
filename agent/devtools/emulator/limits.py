"""IAI's documented limits, codes, messages and regions, stated here from the API documentation.

Never imported from the client (agent/iai): a wrong limit there must show up as a refusal here.
Sources: the IAI API 3.0 pages (CreateFace, CreatePerson, CreateGroup, SearchFaces, GetPersonGroupInfo, ...), the
official Python SDK `tencentcloud-sdk-python-iai` (v20180301 and v20200303 `models.py` and `errorcodes.py`), the
API 3.0 common error codes and the IAI request-structure page. docs/emulator.md lists every rule and its source.
"""

from __future__ import annotations

import re

SERVICE = "iai"  # the credential scope's service name
VERSIONS = ("2018-03-01", "2020-03-03")
# The 2020-03-03 pages of CreateFace, CreatePerson and GetPersonBaseInfo mark the common parameter Region required.
VERSIONS_REQUIRING_REGION = ("2020-03-03",)
# The IAI request-structure page's hosted regions (plus the two financial zones of the common region list).
REGIONS = frozenset({
    "ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-chengdu", "ap-chongqing", "ap-hongkong", "ap-singapore",
    "ap-bangkok", "ap-mumbai", "ap-seoul", "ap-tokyo", "na-ashburn", "na-siliconvalley", "na-toronto", "eu-frankfurt",
    "ap-shanghai-fsi", "ap-shenzhen-fsi",
})
TIMESTAMP_WINDOW_S = 300  # X-TC-Timestamp within 5 minutes of the server's clock
CONTENT_TYPES = ("application/json", "application/json; charset=utf-8")  # the docs' form and the SDK's form
MAX_BODY_BYTES = 10 * 1024 * 1024  # a TC3-signed POST body

# Images (CreateFace Images/Urls, CreatePerson Image/Url, SearchFaces Image/Url).
MAX_IMAGE_B64_BYTES = 5 * 1024 * 1024
JPEG_MAX_LONG_SIDE = 4000
OTHER_MAX_LONG_SIDE = 2000
MIN_SHORT_SIDE = 64
MAX_IMAGES_PER_CALL = 4
MAX_FACES_PER_PERSON = 5

# Identifiers and texts.
ID_RE = re.compile(r"^[A-Za-z0-9\-%@#&_]+$")  # PersonId and GroupId: letters, digits and -%@#&_
ID_MAX_BYTES = 64
NAME_MAX_CHARS = 60  # PersonName and GroupName: [1, 60] characters
TAG_MAX_CHARS = 40
GROUP_EX_DESCRIPTIONS_MAX = 5
GROUP_EX_DESCRIPTION_MAX_CHARS = 30
PERSON_EX_DESCRIPTION_MAX_CHARS = 60
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")

FACE_MODEL_VERSIONS = ("2.0", "3.0")
DEFAULT_FACE_MODEL_VERSION = "3.0"  # accounts opened after 2020-04-02
LIVENESS_FACE_MODEL_VERSIONS = ("3.0",)  # DetectLiveFaceAccurate: "currently only 3.0"
LIVENESS_MIN_FACE_PX = 100  # DetectLiveFaceAccurate: "the face larger than 100x100 pixels"
# Actions that exist in some API versions only (the SDK's v20180301 client has no DetectLiveFaceAccurate).
ACTION_VERSIONS = {"DetectLiveFaceAccurate": ("2020-03-03",)}
CONTROL_LEVELS = range(5)  # QualityControl and UniquePersonControl: 0 (off) .. 4 (strictest)
THRESHOLD_MIN, THRESHOLD_MAX = 0.0, 100.0
DEFAULT_FACE_MATCH_THRESHOLD = 60.0  # CreateFace; SearchFaces defaults to 0

SEARCH_MAX_GROUP_IDS = 100
SEARCH_MAX_FACE_NUM = 10
SEARCH_DEFAULT_PERSON_NUM = 5
SEARCH_MAX_PERSON_NUM = 100
MIN_FACE_SIZE = 34  # smaller faces cannot be recognised (SearchFaces MinFaceSize default and floor)
GROUP_LIST_MAX_LIMIT = 1000
PERSON_GROUP_INFO_MAX_LIMIT = 100
DEFAULT_PAGE_LIMIT = 10

# CreateFace RetCode values, one per image.
RET_OK = 0
RET_NO_FACE = -1101
RET_DECODE_FAILED = -1102
RET_SIZE = -1109
RET_QUALITY = -1601
RET_MISMATCH = -1604
RET_SERVICE_ERROR = -1  # "other non-zero values: a service error"

# The API 3.0 common error codes' documented messages (English pages). SignatureExpire carries no server time:
# a client learns the offset from the HTTP Date header.
MESSAGES = {
    "AuthFailure.InvalidAuthorization": "`Authorization` in the request header is invalid.",
    "AuthFailure.SecretIdNotFound": "Key does not exist. Check if the key has been deleted or disabled in the console, "
                                    "and if not, check if the key is correctly entered. Note that whitespaces should not "
                                    "exist before or after the key.",
    "AuthFailure.SignatureExpire": "Signature expired. Timestamp and server time cannot differ by more than five minutes. "
                                   "Please ensure your current local time matches the standard time.",
    "AuthFailure.SignatureFailure": "Invalid signature. Signature calculation error. Please ensure you've followed the "
                                    "signature calculation process described in the Signature API documentation.",
    "AuthFailure.TokenFailure": "Token error.",
    "AuthFailure.UnauthorizedOperation": "The request is not authorized. For more information, see the CAM documentation.",
    "InternalError": "Internal error.",
    "InvalidAction": "The API does not exist.",
    "NoSuchVersion": "The API version does not exist.",
    "RequestLimitExceeded": "The number of requests exceeds the frequency limit.",
    "RequestSizeLimitExceeded": "The request size exceeds the upper limit.",
    "UnsupportedRegion": "API does not support the requested region.",
}

# Persistent account conditions (control key `account`) and the codes the service answers them with.
ACCOUNT_CONDITIONS: dict[str, tuple[str, str]] = {
    "in_arrears": ("ResourceUnavailable.InArrears", "The account is in arrears."),
    "not_activated": ("ResourceUnavailable.NotExist", "Billing status unknown: check that the service is activated in the console."),
    "not_ready": ("ResourceUnavailable.NotReady", "The service is not activated."),
    "frozen": ("ResourceUnavailable.Freeze", "The account is frozen."),
    "stopped": ("ResourceUnavailable.StopUsing", "The account has stopped the service."),
    "low_balance": ("ResourceUnavailable.LowBalance", "The account balance is too low."),
    "charge_status": ("ResourceUnavailable.ChargeStatusException", "The account is in arrears."),
    "sold_out": ("ResourcesSoldOut.ChargeStatusException", "The billing status is abnormal."),
    "unknown_status": ("ResourceUnavailable.UnknownStatus", "The billing status is unknown."),
    "delivering": ("ResourceUnavailable.Delivering", "The resource is being delivered: try again later."),
    "recovered": ("ResourceUnavailable.Recover", "The resource has been reclaimed."),
    "key_disabled": ("AuthFailure.SecretIdNotFound", MESSAGES["AuthFailure.SecretIdNotFound"]),
    "unauthorized": ("AuthFailure.UnauthorizedOperation", MESSAGES["AuthFailure.UnauthorizedOperation"]),
}
