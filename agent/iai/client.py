"""Tencent Cloud IAI client: typed actions over one signed, rate-limited, retrying HTTPS session.

Knows nothing of MQTT or cameras. CreateFace and CreatePerson are not idempotent: when an attempt's
outcome is unknown (timeout after sending, dropped connection, 5xx), the client never re-sends blindly
— it reads the person back with GetPersonBaseInfo and reports faces that appeared as the result.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from agent.config import CloudConfig, Secrets
from agent.errors import ErrorCode
from agent.iai.errors import (
    ClockSkewError,
    CloudError,
    CloudRateLimited,
    CloudRejected,
    CloudUnavailable,
    OutcomeUnknown,
    error_from_code,
)
from agent.iai.limits import MAX_BODY_BYTES, MAX_IMAGES_PER_CALL, ImageRejected, b64, check_image, check_person_id
from agent.iai.signing import SERVICE, authorization
from agent.retry import RetryPolicy, TokenBucket

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = ["content-type", "host", "x-tc-action"]


# --- typed requests and responses ------------------------------------------------------------------


@dataclass(frozen=True)
class FaceRect:
    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> FaceRect:
        return cls(int(data.get("X", 0)), int(data.get("Y", 0)), int(data.get("Width", 0)), int(data.get("Height", 0)))


@dataclass(frozen=True)
class CreateFaceRequest:
    person_id: str
    images: list[bytes] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    face_match_threshold: float | None = None
    quality_control: int | None = None
    need_rotate_detection: bool | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"PersonId": self.person_id}
        if self.images:
            body["Images"] = [b64(image) for image in self.images]
        if self.urls:
            body["Urls"] = list(self.urls)
        if self.face_match_threshold is not None:
            body["FaceMatchThreshold"] = float(self.face_match_threshold)
        if self.quality_control is not None:
            body["QualityControl"] = int(self.quality_control)
        if self.need_rotate_detection is not None:
            body["NeedRotateDetection"] = int(bool(self.need_rotate_detection))
        return body


@dataclass(frozen=True)
class CreateFaceResponse:
    suc_face_num: int
    suc_face_ids: list[str]
    ret_code: list[int]
    suc_indexes: list[int]
    suc_face_rects: list[FaceRect]
    face_model_version: str | None
    request_id: str | None
    reconciled: bool = False  # True: the answer was lost; faces found by reading the person back

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CreateFaceResponse:
        return cls(
            suc_face_num=int(data.get("SucFaceNum", 0)),
            suc_face_ids=[str(x) for x in data.get("SucFaceIds") or []],
            ret_code=[int(x) for x in data.get("RetCode") or []],
            suc_indexes=[int(x) for x in data.get("SucIndexes") or []],
            suc_face_rects=[FaceRect.parse(r) for r in data.get("SucFaceRects") or []],
            face_model_version=data.get("FaceModelVersion"),
            request_id=data.get("RequestId"),
        )


@dataclass(frozen=True)
class CreatePersonRequest:
    group_id: str
    person_name: str
    person_id: str
    image: bytes | None = None
    url: str | None = None
    gender: int | None = None
    unique_person_control: int | None = None
    quality_control: int | None = None
    need_rotate_detection: bool | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"GroupId": self.group_id, "PersonName": self.person_name, "PersonId": self.person_id}
        if self.image is not None:
            body["Image"] = b64(self.image)
        if self.url is not None:
            body["Url"] = self.url
        for key, value in (("Gender", self.gender), ("UniquePersonControl", self.unique_person_control), ("QualityControl", self.quality_control)):
            if value is not None:
                body[key] = int(value)
        if self.need_rotate_detection is not None:
            body["NeedRotateDetection"] = int(bool(self.need_rotate_detection))
        return body


@dataclass(frozen=True)
class CreatePersonResponse:
    face_id: str | None
    face_rect: FaceRect | None
    similar_person_id: str | None
    face_model_version: str | None
    request_id: str | None
    reconciled: bool = False

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CreatePersonResponse:
        rect = data.get("FaceRect")
        return cls(data.get("FaceId"), FaceRect.parse(rect) if rect else None, data.get("SimilarPersonId") or None,
                   data.get("FaceModelVersion"), data.get("RequestId"))


@dataclass(frozen=True)
class PersonInfo:
    person_id: str
    person_name: str
    gender: int
    face_ids: list[str]
    request_id: str | None


@dataclass(frozen=True)
class DeleteFaceResponse:
    suc_deleted_num: int
    suc_face_ids: list[str]
    request_id: str | None


@dataclass(frozen=True)
class PersonListNum:
    person_num: int
    face_num: int
    request_id: str | None


@dataclass(frozen=True)
class GroupInfo:
    group_id: str
    group_name: str
    face_model_version: str | None


@dataclass(frozen=True)
class GroupList:
    groups: list[GroupInfo]
    group_num: int
    request_id: str | None


# --- the client ------------------------------------------------------------------------------------


class IaiClient:
    """One client per process; thread-safe. Every call is signed, rate-limited, bounded and logged by RequestId."""

    def __init__(
        self,
        endpoint: str,
        secret_id: str,
        secret_key: str,
        *,
        version: str = "2018-03-01",
        region: str = "",
        language: str = "",
        session_token: str | None = None,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 15.0,
        policy: RetryPolicy | None = None,
        limiter: TokenBucket | None = None,
        settle_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"cloud endpoint {endpoint!r} is not an http(s) URL")
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.host = parts.netloc
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.version = version
        self.region = region
        self.language = language
        self._token = session_token
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.policy = policy or RetryPolicy()
        self.limiter = limiter
        self.settle_s = settle_s  # IAI applies a new face within ~1 s (at most 5 s): wait before reading it back
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self.clock_offset_s = 0.0  # service time minus device time, learnt from SignatureExpire
        self.session = requests.Session()  # keep-alive; proxies from the environment (trust_env); TLS verified
        self.session.headers["User-Agent"] = "faceagent"
        self._person_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def from_config(cls, cfg: CloudConfig, secrets: Secrets, **kwargs: Any) -> IaiClient:
        if secrets.secret_id is None or secrets.secret_key is None:
            raise ValueError("cloud SecretId/SecretKey are not configured")
        return cls(
            cfg.endpoint, secrets.secret_id.get_secret_value(), secrets.secret_key.get_secret_value(),
            version=cfg.version, region=cfg.region, language=cfg.language,
            session_token=secrets.session_token.get_secret_value() if secrets.session_token else None,
            connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.read_timeout_s,
            policy=RetryPolicy(cfg.max_attempts, cfg.deadline_s, cfg.backoff_base_s, cfg.backoff_max_s),
            limiter=TokenBucket(cfg.rate_limit_per_s, cfg.rate_burst), **kwargs,
        )

    def close(self) -> None:
        self.session.close()

    # --- one attempt ---------------------------------------------------------------------------

    def _headers(self, action: str, body: bytes) -> dict[str, str]:
        timestamp = int(self._clock() + self.clock_offset_s)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": self.version,
            "X-TC-Timestamp": str(timestamp),
        }
        if self.region:
            headers["X-TC-Region"] = self.region
        if self.language:
            headers["X-TC-Language"] = self.language
        if self._token:
            headers["X-TC-Token"] = self._token
        headers["Authorization"] = authorization(self.secret_id, self._secret_key, SERVICE, timestamp, headers, SIGNED_HEADERS, body)
        return headers

    def _attempt(self, action: str, body: bytes, person: str, group: str) -> dict[str, Any]:
        headers = self._headers(action, body)
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise CloudUnavailable(f"TLS verification of {self.host} failed: {exc.__class__.__name__}", retryable=False) from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) as exc:
            if _never_sent(exc):
                raise CloudUnavailable(f"cannot connect to {self.host}: {_reason(exc)}") from None
            raise OutcomeUnknown(f"connection to {self.host} lost before the answer: {_reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise OutcomeUnknown(f"no answer from {self.host} within {self.timeout[1]} s") from None
        except requests.exceptions.RequestException as exc:
            raise OutcomeUnknown(f"request to {self.host} failed: {_reason(exc)}") from None
        if response.status_code == 429:
            raise CloudRateLimited(f"HTTP 429 from {self.host}: too many requests")
        if response.status_code >= 500:
            raise OutcomeUnknown(f"HTTP {response.status_code} from {self.host}")
        if response.status_code != 200:
            raise CloudRejected(f"HTTP {response.status_code} from {self.host}: check cloud.endpoint", retryable=False)
        try:
            data = response.json()["Response"]
            if not isinstance(data, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise OutcomeUnknown(f"unreadable answer from {self.host}") from None
        request_id = data.get("RequestId")
        error = data.get("Error")
        if error:
            failure = error_from_code(str(error.get("Code", "")), str(error.get("Message", "")), request_id, person, group)
            if isinstance(failure, ClockSkewError):
                self._learn_clock_offset(response, str(error.get("Message", "")), int(headers["X-TC-Timestamp"]))
            raise failure
        return data

    def _learn_clock_offset(self, response: requests.Response, message: str, sent_timestamp: int) -> None:
        """Service time from the error message (a unix time other than the one we sent), else the HTTP Date."""
        server: float | None = None
        candidates = [int(n) for n in re.findall(r"(?<!\d)(\d{10})(?!\d)", message) if int(n) != sent_timestamp]
        if candidates:
            server = float(candidates[-1])
        elif response.headers.get("Date"):
            try:
                server = parsedate_to_datetime(response.headers["Date"]).timestamp()
            except (TypeError, ValueError):
                server = None
        if server is not None:
            self.clock_offset_s = server - self._clock()
            log.warning("device clock is %+.0f s off the cloud's: re-signing with corrected time; fix the clock (NTP)",
                        -self.clock_offset_s)

    # --- the retry loop --------------------------------------------------------------------------

    def call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        person: str = "",
        group: str = "",
        reconcile: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """POST one action with retries; return its `Response` object.

        Idempotent actions pass no `reconcile` and are retried on any retryable error. Non-idempotent
        ones pass `reconcile`: after an unknown outcome it is called and, when it finds the effect of
        the lost attempt, its answer is returned instead of re-sending.
        """
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(body) > MAX_BODY_BYTES:
            raise ImageRejected(f"the {action} request is {len(body)} bytes: IAI allows at most 10 MB; send fewer or smaller images")
        started = self._monotonic()
        skew_retried = False
        attempt = 0
        while True:
            attempt += 1
            remaining = self.policy.deadline_s - (self._monotonic() - started)
            if self.limiter is not None and not self.limiter.acquire(timeout=max(0.0, remaining)):
                raise CloudRateLimited(f"local rate limit: no {action} slot within the {self.policy.deadline_s:.0f} s deadline")
            t0 = self._monotonic()
            try:
                data = self._attempt(action, body, person, group)
                if self.limiter is not None:
                    self.limiter.speed_up()
                log.info("%s ok in %.0f ms (attempt %d, RequestId %s)", action, (self._monotonic() - t0) * 1000, attempt, data.get("RequestId"))
                return data
            except ClockSkewError as exc:
                log.warning("%s: %s (RequestId %s)", action, exc.message, exc.request_id)
                if skew_retried:
                    raise
                skew_retried = True
                attempt -= 1  # the one re-signed retry is extra
                continue
            except OutcomeUnknown as exc:
                log.warning("%s attempt %d: outcome unknown: %s", action, attempt, exc.message)
                if reconcile is not None:
                    self._sleep(min(self.settle_s, max(0.0, self.policy.deadline_s - (self._monotonic() - started))))
                    try:
                        found = reconcile()
                    except CloudError as read_error:
                        # Cannot tell whether it landed: re-sending could add a second face. Stop here.
                        raise OutcomeUnknown(
                            f"{action} outcome unknown and the person could not be read back ({read_error.message}); not re-sent",
                            cloud_code=read_error.cloud_code, code=ErrorCode.CLOUD_UNAVAILABLE,
                        ) from None
                    if found is not None:
                        log.warning("%s: the lost attempt had been applied; not re-sending", action)
                        return found
                last: CloudError = exc
            except CloudError as exc:
                log.log(logging.WARNING if exc.retryable else logging.INFO, "%s attempt %d failed: %s %s (RequestId %s)",
                        action, attempt, exc.cloud_code or "", exc.message, exc.request_id)
                if not exc.retryable:
                    raise
                last = exc
            wait = self.policy.backoff(attempt - 1)
            if isinstance(last, CloudRateLimited):
                wait = max(wait, 1.0)  # IAI's limit is per second: an immediate retry only adds load
                if self.limiter is not None:
                    self.limiter.slow_down()
            elapsed = self._monotonic() - started
            if attempt >= self.policy.max_attempts or elapsed + wait > self.policy.deadline_s:
                raise self._gave_up(action, last, attempt, elapsed)
            self._sleep(wait)

    @staticmethod
    def _gave_up(action: str, last: CloudError, attempts: int, elapsed: float) -> CloudError:
        if isinstance(last, CloudRateLimited):
            return last
        return CloudUnavailable(
            f"{action} failed after {attempts} attempt(s) in {elapsed:.1f} s: {last.message}",
            cloud_code=last.cloud_code, request_id=last.request_id, code=ErrorCode.CLOUD_UNAVAILABLE, retryable=True,
        )

    @contextmanager
    def person_lock(self, person_id: str) -> Iterator[None]:
        """Serialize CreateFace/CreatePerson per person (IAI refuses concurrent ones, and reconciliation needs it)."""
        with self._locks_guard:
            lock, users = self._person_locks.get(person_id, (threading.Lock(), 0))
            self._person_locks[person_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_guard:
                lock, users = self._person_locks[person_id]
                if users <= 1:
                    del self._person_locks[person_id]
                else:
                    self._person_locks[person_id] = (lock, users - 1)

    # --- actions -----------------------------------------------------------------------------------

    def get_person_base_info(self, person_id: str) -> PersonInfo:
        check_person_id(person_id)
        data = self.call("GetPersonBaseInfo", {"PersonId": person_id}, person=person_id)
        return PersonInfo(person_id, str(data.get("PersonName", "")), int(data.get("Gender", 0) or 0),
                          [str(x) for x in data.get("FaceIds") or []], data.get("RequestId"))

    def create_face(self, request: CreateFaceRequest, known_face_ids: list[str] | None = None) -> CreateFaceResponse:
        """Add faces to an existing person; never adds the same images twice.

        `known_face_ids` are the person's FaceIds read just before (read here when not given): they
        are what a lost attempt is judged against.
        """
        check_person_id(request.person_id)
        count = len(request.images) + len(request.urls)
        if not 1 <= count <= MAX_IMAGES_PER_CALL:
            raise ImageRejected(f"CreateFace takes 1-{MAX_IMAGES_PER_CALL} images, got {count}")
        for index, image in enumerate(request.images):
            check_image(image, index)
        with self.person_lock(request.person_id):
            before = set(known_face_ids if known_face_ids is not None else self.get_person_base_info(request.person_id).face_ids)

            def reconcile() -> dict[str, Any] | None:
                new = [f for f in self.get_person_base_info(request.person_id).face_ids if f not in before]
                return {"SucFaceNum": len(new), "SucFaceIds": new, "Reconciled": True} if new else None

            data = self.call("CreateFace", request.payload(), person=request.person_id, reconcile=reconcile)
        response = CreateFaceResponse.parse(data)
        if data.get("Reconciled"):
            response = CreateFaceResponse(response.suc_face_num, response.suc_face_ids, [], [], [], None, None, reconciled=True)
        return response

    def create_person(self, request: CreatePersonRequest) -> CreatePersonResponse:
        """Create a person with its first face; a lost attempt that did create it is reported, not repeated."""
        check_person_id(request.person_id)
        if request.image is not None:
            check_image(request.image)
        with self.person_lock(request.person_id):

            def reconcile() -> dict[str, Any] | None:
                from agent.iai.errors import PersonNotFound

                try:
                    info = self.get_person_base_info(request.person_id)
                except PersonNotFound:
                    return None
                return {"FaceId": info.face_ids[0] if info.face_ids else None, "Reconciled": True}

            data = self.call("CreatePerson", request.payload(), person=request.person_id, group=request.group_id, reconcile=reconcile)
        response = CreatePersonResponse.parse(data)
        if data.get("Reconciled"):
            response = CreatePersonResponse(response.face_id, None, None, None, None, reconciled=True)
        return response

    def delete_face(self, person_id: str, face_ids: list[str]) -> DeleteFaceResponse:
        check_person_id(person_id)
        data = self.call("DeleteFace", {"PersonId": person_id, "FaceIds": list(face_ids)}, person=person_id)
        return DeleteFaceResponse(int(data.get("SucDeletedNum", 0)), [str(x) for x in data.get("SucFaceIds") or []], data.get("RequestId"))

    def get_person_list_num(self, group_id: str) -> PersonListNum:
        data = self.call("GetPersonListNum", {"GroupId": group_id}, group=group_id)
        return PersonListNum(int(data.get("PersonNum", 0)), int(data.get("FaceNum", 0)), data.get("RequestId"))

    def get_group_list(self, offset: int = 0, limit: int = 10) -> GroupList:
        if not 0 < limit <= 1000:
            raise ValueError("limit must be 1-1000")
        data = self.call("GetGroupList", {"Offset": offset, "Limit": limit})
        groups = [GroupInfo(str(g.get("GroupId")), str(g.get("GroupName")), g.get("FaceModelVersion")) for g in data.get("GroupInfos") or []]
        return GroupList(groups, int(data.get("GroupNum", len(groups))), data.get("RequestId"))

    def create_group(self, group_id: str, group_name: str, face_model_version: str | None = None) -> str | None:
        """Create a group; returns the RequestId. An already existing group (e.g. a lost first attempt) is fine."""
        payload: dict[str, Any] = {"GroupId": group_id, "GroupName": group_name}
        if face_model_version:
            payload["FaceModelVersion"] = face_model_version
        try:
            data = self.call("CreateGroup", payload, group=group_id)
        except CloudRejected as exc:
            if exc.cloud_code == "InvalidParameterValue.GroupIdAlreadyExist":
                return exc.request_id
            raise
        return data.get("RequestId")


def _never_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (NewConnectionError, ConnectTimeoutError)):
            return True
        stack.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        for linked in (item.__cause__, item.__context__):
            if linked is not None:
                stack.append(linked)
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else exc.__class__.__name__
