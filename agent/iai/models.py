"""Typed requests and responses of the IAI actions the agent uses (API 3.0, both versions share the fields).

Requests render their JSON body with `payload()` (unset fields omitted, as the official SDK does);
responses parse the `Response` object of a successful answer with `parse()`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


def b64(data: bytes) -> str:
    """Base64 text for a JSON body (a str: bytes would be serialised wrongly)."""
    return base64.b64encode(data).decode("ascii")


def _strings(values: Any) -> list[str]:
    return [str(v) for v in values or []]


def typed_list(values: Any, name: str, kind: type) -> list[Any]:
    """`values` as a list of `kind` (strings non-empty); `ValueError` for anything else (a string is not a list of ids)."""
    if not isinstance(values, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} is not a list of {kind.__name__}")
    if kind is str and not all(values):
        raise ValueError(f"{name} holds an empty id")
    return values


def face_ids_of(data: dict[str, Any], images: int) -> list[str]:
    """The FaceIds a CreateFace answer for `images` images claims, checked strictly: a success that does not add up
    (ids not a list of distinct strings, counts that disagree, codes that are not numbers) raises `ValueError`."""
    ids = typed_list(data.get("SucFaceIds"), "SucFaceIds", str)
    codes = typed_list(data.get("RetCode"), "RetCode", int)
    indexes = typed_list(data.get("SucIndexes"), "SucIndexes", int)
    rects = typed_list(data.get("SucFaceRects"), "SucFaceRects", dict)
    if data.get("SucFaceNum") != len(ids) or len(set(ids)) != len(ids) or len(ids) > images:
        raise ValueError("SucFaceNum, SucFaceIds and the images sent disagree")
    if len(codes) != images or codes.count(0) != len(ids) or len(indexes) != len(ids) or len(rects) != len(ids):
        raise ValueError("RetCode, SucIndexes and SucFaceRects do not match the faces added")
    if sorted(indexes) != [i for i, code in enumerate(codes) if code == 0]:
        raise ValueError("SucIndexes do not name the images whose RetCode is 0")
    return ids


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

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CreateFaceResponse:
        return cls(
            suc_face_num=int(data.get("SucFaceNum", 0)),
            suc_face_ids=_strings(data.get("SucFaceIds")),
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

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CreatePersonResponse:
        """`ValueError` unless the answer names one FaceId (a string) and, if any, a face rectangle.

        The one success without a FaceId is UniquePersonControl's refusal: nothing created, the face already
        belongs to `SimilarPersonId` (a non-empty string); FaceId is then empty or absent.
        """
        rect = data.get("FaceRect")
        face_id = data.get("FaceId")
        similar = data.get("SimilarPersonId")
        duplicate = isinstance(similar, str) and bool(similar) and face_id in (None, "")
        if (not duplicate and (not isinstance(face_id, str) or not face_id)) or not isinstance(rect or {}, dict):
            raise ValueError("CreatePerson answered without a FaceId")
        return cls(str(face_id) if face_id else None, FaceRect.parse(rect) if rect else None, data.get("SimilarPersonId") or None,
                   data.get("FaceModelVersion"), data.get("RequestId"))


@dataclass(frozen=True)
class PersonInfo:
    person_id: str
    person_name: str
    gender: int
    face_ids: list[str]
    request_id: str | None


@dataclass(frozen=True)
class PersonGroups:
    """GetPersonGroupInfo: the groups a person belongs to."""

    group_ids: list[str]
    group_num: int
    face_model_version: str | None
    request_id: str | None


@dataclass(frozen=True)
class Candidate:
    """One SearchFaces candidate: the person and its face that best matched the image."""

    person_id: str
    face_id: str
    score: float


@dataclass(frozen=True)
class SearchResult:
    """SearchFaces for one face in the image: the candidates, best score first."""

    candidates: list[Candidate]
    ret_code: int


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


@dataclass(frozen=True)
class LivenessScore:
    """DetectLiveFaceAccurate: how likely the image shows a live face (0-100; IAI's tiers 5/10/40/70/90, 40 recommended)."""

    score: float
    face_model_version: str | None
    request_id: str | None
