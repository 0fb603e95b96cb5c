"""Tencent Cloud IAI client: the typed actions the agent uses, over one `Transport`.

Knows nothing of MQTT or cameras. Reads are retried freely; CreateFace and CreatePerson are sent at
most once per attempt that could have landed (see transport.py); `upload.py` builds the exactly-once
enrollment on top of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent.config import CloudConfig, Secrets
from agent.iai.errors import CloudRejected, CloudUnavailable, OutcomeUnknown
from agent.iai.limits import MAX_IMAGES_PER_CALL, ImageRejected, check_image, check_person_id
from agent.iai.models import (
    Candidate,
    CreateFaceRequest,
    CreateFaceResponse,
    CreatePersonRequest,
    CreatePersonResponse,
    DeleteFaceResponse,
    GroupInfo,
    GroupList,
    LivenessScore,
    PersonGroups,
    PersonInfo,
    PersonListNum,
    SearchResult,
    b64,
    face_ids_of,
    typed_list,
)
from agent.iai.transport import Credentials, Transport
from agent.retry import RetryPolicy, TokenBucket

MAX_SEARCH_GROUPS = 100  # SearchFaces takes at most 100 GroupIds per call
LIVENESS_VERSION = "2020-03-03"  # DetectLiveFaceAccurate exists in this API version only


@contextmanager
def _readable(action: str) -> Iterator[None]:
    """A read answer that does not parse (a list where a string belongs, a score that is not a number) is the cloud
    failing, `CloudUnavailable`: a settlement waits and tries again; it never takes a thread down."""
    try:
        yield
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise CloudUnavailable(f"{action} gave an unreadable answer ({exc.__class__.__name__}: {exc})") from None


def _unusable(action: str, data: dict[str, Any], exc: Exception) -> OutcomeUnknown:
    """A success answer that does not add up: the write may have been applied, so it is read back, never trusted."""
    return OutcomeUnknown(f"{action} answered success that does not add up ({exc}): reading the person back",
                          request_id=str(data.get("RequestId") or "") or None)


class IaiClient:
    """One client per process; thread-safe. Every call is signed, rate-limited, bounded and logged by RequestId."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._person_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def connect(cls, endpoint: str, secret_id: str, secret_key: str, **kwargs: Any) -> IaiClient:
        """A client for `endpoint` with these keys; `kwargs` go to `Transport` (version defaults to 2018-03-01)."""
        kwargs.setdefault("version", "2018-03-01")
        return cls(Transport(endpoint, Credentials(secret_id, secret_key, kwargs.pop("session_token", None)), **kwargs))

    @classmethod
    def from_config(cls, cfg: CloudConfig, secrets: Secrets, reload_credentials: Callable[[], Credentials] | None = None,
                    **kwargs: Any) -> IaiClient:
        if secrets.secret_id is None or secrets.secret_key is None:
            raise ValueError("cloud SecretId/SecretKey are not configured")
        credentials = Credentials(secrets.secret_id.get_secret_value(), secrets.secret_key.get_secret_value(),
                                  secrets.session_token.get_secret_value() if secrets.session_token else None)
        return cls(Transport(
            cfg.endpoint, credentials, version=cfg.version, region=cfg.region, language=cfg.language,
            connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.read_timeout_s,
            policy=RetryPolicy(cfg.max_attempts, cfg.deadline_s, cfg.backoff_base_s, cfg.backoff_max_s),
            limiter=TokenBucket(cfg.rate_limit_per_s, cfg.rate_burst), reload_credentials=reload_credentials, **kwargs,
        ))

    def close(self) -> None:
        self.transport.close()

    @contextmanager
    def person_lock(self, person_id: str) -> Iterator[None]:
        """Serialize writes per person within this process (IAI refuses concurrent ones, and a diff needs quiet)."""
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

    # --- reads (idempotent: resent after any transient failure) -------------------------------------------

    def get_person_base_info(self, person_id: str) -> PersonInfo:
        check_person_id(person_id)
        data = self.transport.call("GetPersonBaseInfo", {"PersonId": person_id}, idempotent=True, person=person_id)
        with _readable("GetPersonBaseInfo"):
            return PersonInfo(person_id, str(data.get("PersonName", "")), int(data.get("Gender", 0) or 0),
                              typed_list(data.get("FaceIds") or [], "FaceIds", str), data.get("RequestId"))

    def get_person_group_info(self, person_id: str, limit: int = 100) -> PersonGroups:
        """The groups `person_id` belongs to (at most `limit`, IAI's maximum page)."""
        check_person_id(person_id)
        data = self.transport.call("GetPersonGroupInfo", {"PersonId": person_id, "Offset": 0, "Limit": limit}, idempotent=True,
                                   person=person_id)
        with _readable("GetPersonGroupInfo"):
            groups = [str(g.get("GroupId")) for g in data.get("PersonGroupInfos") or []]
            return PersonGroups(groups, int(data.get("GroupNum", len(groups)) or 0), data.get("FaceModelVersion"), data.get("RequestId"))

    def search_faces(self, group_ids: list[str], image: bytes, max_person_num: int = 5) -> list[SearchResult]:
        """SearchFaces for the largest face of `image` in `group_ids` (at most 100): its candidates, best first."""
        if not 1 <= len(group_ids) <= MAX_SEARCH_GROUPS:
            raise ValueError(f"SearchFaces takes 1-{MAX_SEARCH_GROUPS} groups, got {len(group_ids)}")
        check_image(image)
        data = self.transport.call("SearchFaces", {"GroupIds": list(group_ids), "Image": b64(image), "MaxFaceNum": 1,
                                                   "MaxPersonNum": max_person_num, "NeedPersonInfo": 0}, idempotent=True)
        results = []
        with _readable("SearchFaces"):
            for item in typed_list(data.get("Results") or [], "Results", dict):
                candidates = [Candidate(str(c["PersonId"]), str(c["FaceId"]), float(c.get("Score") or 0.0))
                              for c in typed_list(item.get("Candidates") or [], "Candidates", dict)]
                results.append(SearchResult(sorted(candidates, key=lambda c: c.score, reverse=True), int(item.get("RetCode", 0) or 0)))
        return results

    def detect_live_face_accurate(self, image: bytes) -> LivenessScore:
        """DetectLiveFaceAccurate on one still image (a face over 100x100 px, about 3:4). Billed per call; a read, so resent
        after a transient failure, never after a refusal. Always API 2020-03-03, whatever cloud.version says."""
        check_image(image)
        data = self.transport.call("DetectLiveFaceAccurate", {"Image": b64(image), "FaceModelVersion": "3.0"}, idempotent=True,
                                   version=LIVENESS_VERSION)
        return LivenessScore(float(data.get("Score") or 0.0), data.get("FaceModelVersion"), data.get("RequestId"))

    def may_detect_liveness(self) -> str | None:
        """Whether the key's CAM policy allows DetectLiveFaceAccurate, asked without an image (so nothing is scored or
        billed): a parameter refusal means the action is allowed (its RequestId is returned); UnauthorizedOperation
        comes as `CloudAuthError`."""
        try:
            self.transport.call("DetectLiveFaceAccurate", {"FaceModelVersion": "3.0"}, idempotent=True, version=LIVENESS_VERSION)
        except CloudRejected as exc:
            if exc.cloud_code and exc.cloud_code.startswith(("InvalidParameter", "MissingParameter")):
                return exc.request_id
            raise
        return None

    def get_person_list_num(self, group_id: str) -> PersonListNum:
        data = self.transport.call("GetPersonListNum", {"GroupId": group_id}, idempotent=True, group=group_id)
        with _readable("GetPersonListNum"):
            return PersonListNum(int(data.get("PersonNum", 0)), int(data.get("FaceNum", 0)), data.get("RequestId"))

    def get_group_list(self, offset: int = 0, limit: int = 10) -> GroupList:
        if not 0 < limit <= 1000:
            raise ValueError("limit must be 1-1000")
        data = self.transport.call("GetGroupList", {"Offset": offset, "Limit": limit}, idempotent=True)
        with _readable("GetGroupList"):
            groups = [GroupInfo(str(g.get("GroupId")), str(g.get("GroupName")), g.get("FaceModelVersion")) for g in data.get("GroupInfos") or []]
            return GroupList(groups, int(data.get("GroupNum", len(groups))), data.get("RequestId"))

    # --- writes ------------------------------------------------------------------------------------------

    def create_face(self, request: CreateFaceRequest, before_attempt: Callable[[], None] | None = None) -> CreateFaceResponse:
        """Add faces to an existing person. Raises `OutcomeUnknown` when an attempt may have landed: never re-sent.

        Call it inside `person_lock(request.person_id)`; `before_attempt` runs before every attempt.
        """
        check_person_id(request.person_id)
        count = len(request.images) + len(request.urls)
        if not 1 <= count <= MAX_IMAGES_PER_CALL:
            raise ImageRejected(f"CreateFace takes 1-{MAX_IMAGES_PER_CALL} images, got {count}")
        for index, image in enumerate(request.images):
            check_image(image, index)
        data = self.transport.call("CreateFace", request.payload(), idempotent=False, person=request.person_id,
                                   before_attempt=before_attempt)
        try:
            face_ids_of(data, count)
            return CreateFaceResponse.parse(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise _unusable("CreateFace", data, exc) from None

    def create_person(self, request: CreatePersonRequest, before_attempt: Callable[[], None] | None = None) -> CreatePersonResponse:
        """Create a person with its first face. Raises `OutcomeUnknown` when an attempt may have landed: never re-sent."""
        check_person_id(request.person_id)
        if request.image is None and request.url is None:
            raise ImageRejected("CreatePerson needs an image")
        if request.image is not None:
            check_image(request.image)
        data = self.transport.call("CreatePerson", request.payload(), idempotent=False, person=request.person_id,
                                   group=request.group_id, before_attempt=before_attempt)
        try:
            return CreatePersonResponse.parse(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise _unusable("CreatePerson", data, exc) from None

    def delete_face(self, person_id: str, face_ids: list[str]) -> DeleteFaceResponse:
        """Delete faces of a person. Idempotent at the cloud: deleting a face that is gone already is not an error."""
        check_person_id(person_id)
        data = self.transport.call("DeleteFace", {"PersonId": person_id, "FaceIds": list(face_ids)}, idempotent=True, person=person_id)
        with _readable("DeleteFace"):
            return DeleteFaceResponse(int(data.get("SucDeletedNum", 0)), typed_list(data.get("SucFaceIds") or [], "SucFaceIds", str),
                                      data.get("RequestId"))

    def create_group(self, group_id: str, group_name: str, face_model_version: str = "3.0") -> str | None:
        """Create a group on the current face model (accounts older than 2020-04-02 otherwise get 2.0).

        Returns the RequestId. An already existing group (e.g. a lost first attempt) is fine.
        """
        payload: dict[str, Any] = {"GroupId": group_id, "GroupName": group_name, "FaceModelVersion": face_model_version}
        try:
            data = self.transport.call("CreateGroup", payload, idempotent=True, group=group_id)
        except CloudRejected as exc:
            if exc.cloud_code == "InvalidParameterValue.GroupIdAlreadyExist":
                return exc.request_id
            raise
        return data.get("RequestId")
