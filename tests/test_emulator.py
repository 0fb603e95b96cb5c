"""The IAI emulator itself: the official SDK (both API versions) through every rule, every fault's exact ordering,
the emulations (SearchFaces scores, FaceMatchThreshold, QualityControl), the gateway (region, token, clock, rate,
account), and the `faceagent emulator` command."""

from __future__ import annotations

import ast
import base64
import email.utils
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests

from agent.devtools.emulator import make_server
from agent.iai.client import CreateFaceRequest
from agent.iai.errors import CloudUnavailable
from tests.conftest import DATA, EMU_ID, EMU_KEY, REPO
from tests.iai_helpers import (
    client_for,
    control,
    faces_of,
    foreign_faces,
    response_of,
    sdk_call,
    sdk_client,
    sdk_error,
    seed_person,
    settled_state,
    signed_post,
    state,
    stats,
)

FACE_JPEG = (DATA / "grace_hopper.jpg").read_bytes()
FACE_PNG = (DATA / "astronaut.png").read_bytes()
NO_FACE = (DATA / "rocket.jpg").read_bytes()
VERSIONS = ["2018-03-01", "2020-03-03"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def variant(kind: str) -> bytes:
    """Grace Hopper's photo changed as a camera or an operator would: resized, cropped, blurred, darkened."""
    frame = cv2.imread(str(DATA / "grace_hopper.jpg"))
    if kind == "half":
        frame = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    elif kind == "crop":
        frame = cv2.resize(frame[60:400, 120:420], (300, 340))
    elif kind == "blur":
        frame = cv2.GaussianBlur(frame, (0, 0), 4)
    elif kind == "dark":
        frame = (frame * 0.3).astype(np.uint8)
    return bytes(cv2.imencode(".jpg", frame)[1].tobytes())


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sdk(emulator: Any, version: str) -> Any:
    """The official SDK of one API version, with a real region."""
    return sdk_client(emulator, version)


@pytest.fixture
def staff(sdk: Any) -> Any:
    """Group `staff` with person 1001 (Grace Hopper's photo); the SDK client."""
    sdk_call(sdk, "CreateGroup", {"GroupId": "staff", "GroupName": "Staff"})
    sdk_call(sdk, "CreatePerson", {"GroupId": "staff", "PersonId": "1001", "PersonName": "Grace", "Image": b64(FACE_JPEG)})
    return sdk


def in_thread(target: Any) -> tuple[threading.Thread, list[Any]]:
    """Run `target` in a thread; its result (or exception) lands in the returned list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# --- the official SDK: the happy path and every validation, both versions ------------------------------------


def test_official_sdk_creates_group_person_and_faces_and_reads_them_back(sdk: Any) -> None:
    sdk_call(sdk, "CreateGroup", {"GroupId": "staff", "GroupName": "Staff", "GroupExDescriptions": ["badge"]})
    person = sdk_call(sdk, "CreatePerson", {"GroupId": "staff", "PersonId": "1001", "PersonName": "Grace", "Image": b64(FACE_JPEG),
                                            "PersonExDescriptionInfos": [{"PersonExDescriptionIndex": 0, "PersonExDescription": "B-7"}]})
    assert person.FaceId and person.FaceRect.Width > 0 and person.FaceModelVersion == "3.0"
    added = sdk_call(sdk, "CreateFace", {"PersonId": "1001", "Images": [b64(variant("half")), b64(variant("crop"))]})
    assert added.SucFaceNum == 2 and added.RetCode == [0, 0] and added.SucIndexes == [0, 1] and added.FaceModelVersion == "3.0"
    info = sdk_call(sdk, "GetPersonBaseInfo", {"PersonId": "1001"})
    assert info.FaceIds == [person.FaceId, *added.SucFaceIds]
    counts = sdk_call(sdk, "GetPersonListNum", {"GroupId": "staff"})
    assert (counts.PersonNum, counts.FaceNum) == (1, 3)
    groups = sdk_call(sdk, "GetGroupList", {"Limit": 10})
    assert [g.GroupId for g in groups.GroupInfos] == ["staff"]
    assert groups.GroupInfos[0].UpdateTimestamp >= groups.GroupInfos[0].CreationTimestamp > 0
    membership = sdk_call(sdk, "GetPersonGroupInfo", {"PersonId": "1001"})
    assert [(g.GroupId, g.PersonExDescriptions) for g in membership.PersonGroupInfos] == [("staff", ["B-7"])]
    assert membership.GroupNum == 1 and membership.FaceModelVersion == "3.0"
    sdk_call(sdk, "DeleteFace", {"PersonId": "1001", "FaceIds": [added.SucFaceIds[0]]})
    sdk_call(sdk, "DeletePerson", {"PersonId": "1001"})
    assert sdk_error(sdk, "GetPersonBaseInfo", {"PersonId": "1001"}) == "InvalidParameterValue.PersonIdNotExist"


GROUP_RULES = [
    ({"GroupId": "g" * 65, "GroupName": "Long"}, "InvalidParameterValue.GroupIdTooLong"),
    ({"GroupId": "bad id", "GroupName": "Bad"}, "InvalidParameterValue.GroupIdIllegal"),
    ({"GroupId": "g2", "GroupName": "n" * 61}, "InvalidParameterValue.GroupNameTooLong"),
    ({"GroupId": "staff", "GroupName": "Other"}, "InvalidParameterValue.GroupIdAlreadyExist"),
    ({"GroupId": "g2", "GroupName": "Staff"}, "InvalidParameterValue.GroupNameAlreadyExist"),
    ({"GroupId": "g2", "GroupName": "G2", "FaceModelVersion": "4.0"}, "InvalidParameterValue.FaceModelVersionIllegal"),
    ({"GroupId": "g2", "GroupName": "G2", "Tag": "t" * 41}, "InvalidParameterValue.GroupTagTooLong"),
    ({"GroupId": "g2", "GroupName": "G2", "GroupExDescriptions": list("abcdef")}, "InvalidParameterValue.GroupExDescriptionsExceed"),
    ({"GroupId": "g2", "GroupName": "G2", "GroupExDescriptions": ["a", "a"]}, "InvalidParameterValue.GroupExDescriptionsNameIdentical"),
    ({"GroupId": "g2", "GroupName": "G2", "GroupExDescriptions": ["x" * 31]}, "InvalidParameterValue.GroupExDescriptionsNameTooLong"),
    ({"GroupName": "G2"}, "MissingParameter.ErrorParameterEmpty"),
]


@pytest.mark.parametrize(("params", "code"), GROUP_RULES)
def test_create_group_rules(staff: Any, params: dict[str, Any], code: str) -> None:
    assert sdk_error(staff, "CreateGroup", params) == code


PERSON_RULES = [
    ({}, "InvalidParameterValue.ImageEmpty"),  # neither Image nor Url
    ({"Url": "https://example.com/face.jpg", "Image": b64(FACE_JPEG)}, "FailedOperation.ImageDownloadError"),  # Url wins
    ({"Url": "not a url"}, "InvalidParameterValue.UrlIllegal"),
    ({"Image": b64(FACE_JPEG), "UniquePersonControl": 5}, "InvalidParameterValue.UniquePersonControlIllegal"),
    ({"Image": b64(FACE_JPEG), "QualityControl": 5}, "InvalidParameterValue.QualityControlIllegal"),
    ({"Image": b64(FACE_JPEG), "Gender": 3}, "InvalidParameterValue.PersonGenderIllegal"),
    ({"Image": b64(FACE_JPEG), "PersonName": "n" * 61}, "InvalidParameterValue.PersonNameTooLong"),
    ({"Image": b64(FACE_JPEG), "PersonId": "1001"}, "InvalidParameterValue.PersonIdAlreadyExist"),
    ({"Image": b64(FACE_JPEG), "PersonId": "p" * 65}, "InvalidParameterValue.PersonIdTooLong"),
    ({"Image": b64(FACE_JPEG), "PersonId": "名字"}, "InvalidParameterValue.PersonIdIllegal"),
    ({"Image": b64(FACE_JPEG), "GroupId": "ghosts"}, "InvalidParameterValue.GroupIdNotExist"),
    ({"Image": b64(NO_FACE)}, "InvalidParameterValue.NoFaceInPhoto"),
    ({"Image": b64(b"GIF89a" + bytes(100))}, "FailedOperation.ImageDecodeFailed"),
    ({"Image": b64(variant("blur")), "QualityControl": 1}, "FailedOperation.FaceQualityNotQualified"),
    ({"Image": b64(bytes(cv2.imencode(".jpg", np.zeros((50, 200, 3), np.uint8))[1]))}, "FailedOperation.ImageResolutionTooSmall"),
    ({"Image": b64(bytes(cv2.imencode(".png", np.zeros((80, 2100, 3), np.uint8))[1]))}, "FailedOperation.ImageResolutionExceed"),
    ({"Image": b64(FACE_JPEG), "PersonExDescriptionInfos": [{"PersonExDescriptionIndex": i} for i in range(6)]},
     "InvalidParameterValue.PersonExDescriptionInfosExceed"),
]


@pytest.mark.parametrize(("params", "code"), PERSON_RULES)
def test_create_person_rules(staff: Any, params: dict[str, Any], code: str) -> None:
    assert sdk_error(staff, "CreatePerson", {"GroupId": "staff", "PersonId": "2002", "PersonName": "New", **params}) == code


FACE_RULES = [
    ({"FaceMatchThreshold": 101}, "InvalidParameterValue.FaceMatchThresholdIllegal"),
    ({"FaceMatchThreshold": -1}, "InvalidParameterValue.FaceMatchThresholdIllegal"),
    ({"QualityControl": -1}, "InvalidParameterValue.QualityControlIllegal"),
    ({"Images": [b64(FACE_JPEG)] * 5}, "InvalidParameterValue.UploadFaceNumExceed"),
    ({"Images": []}, "InvalidParameterValue.ImageEmpty"),
    ({"Urls": ["https://example.com/face.jpg"]}, "FailedOperation.ImageDownloadError"),  # Urls win over Images
    ({"PersonId": "nobody"}, "InvalidParameterValue.PersonIdNotExist"),
]


@pytest.mark.parametrize(("params", "code"), FACE_RULES)
def test_create_face_rules(staff: Any, params: dict[str, Any], code: str) -> None:
    assert sdk_error(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_JPEG)], **params}) == code


def test_face_limits_per_person_and_per_call(staff: Any) -> None:
    sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_JPEG)] * 4})  # 5 faces now
    assert sdk_error(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_JPEG)]}) == "InvalidParameterValue.PersonFaceNumExceed"
    faces = sdk_call(staff, "GetPersonBaseInfo", {"PersonId": "1001"}).FaceIds
    assert sdk_error(staff, "DeleteFace", {"PersonId": "1001", "FaceIds": faces}) == "InvalidParameterValue.DeleteFaceNumExceed"


SEARCH_RULES = [
    ({"GroupIds": ["ghosts"]}, "InvalidParameterValue.GroupIdNotExist"),
    ({"GroupIds": [f"g{i}" for i in range(101)]}, "InvalidParameterValue.GroupIdsExceed"),
    ({"MaxPersonNum": 101}, "InvalidParameterValue.SearchPersonsExceed"),
    ({"MaxFaceNum": 11}, "LimitExceeded.ErrorFaceNumExceed"),
    ({"FaceMatchThreshold": 100.5}, "InvalidParameterValue.FaceMatchThresholdIllegal"),
    ({"QualityControl": 7}, "InvalidParameterValue.QualityControlIllegal"),
    ({"Image": b64(NO_FACE)}, "InvalidParameterValue.NoFaceInPhoto"),
    ({"MinFaceSize": 1000}, "FailedOperation.FaceSizeTooSmall"),
    ({"GroupIds": ["empty"]}, "InvalidParameterValue.NoFaceInGroups"),
    ({"GroupIds": ["staff", "old"]}, "FailedOperation.AcrossVersionsError"),
]


@pytest.mark.parametrize(("params", "code"), SEARCH_RULES)
def test_search_faces_rules(staff: Any, params: dict[str, Any], code: str) -> None:
    sdk_call(staff, "CreateGroup", {"GroupId": "empty", "GroupName": "Empty"})
    sdk_call(staff, "CreateGroup", {"GroupId": "old", "GroupName": "Old", "FaceModelVersion": "2.0"})
    assert sdk_error(staff, "SearchFaces", {"GroupIds": ["staff"], "Image": b64(FACE_JPEG), **params}) == code


def test_listing_limits(staff: Any) -> None:
    assert sdk_error(staff, "GetGroupList", {"Limit": 1001}) == "InvalidParameterValue.LimitExceed"
    assert sdk_error(staff, "GetPersonGroupInfo", {"PersonId": "1001", "Limit": 101}) == "InvalidParameterValue.LimitExceed"


def test_unknown_parameters_and_wrong_types_are_refused(emulator: Any) -> None:
    def code(params: dict[str, Any]) -> str:
        return str(response_of(signed_post(emulator, "GetGroupList", params))["Error"]["Code"])

    assert code({"Limit": 10, "Offest": 0}) == "UnknownParameter"
    assert code({"Limit": "10"}) == "InvalidParameter"
    assert response_of(signed_post(emulator, "GetGroupList", b"[1, 2]"))["Error"]["Code"] == "InvalidParameter"
    assert response_of(signed_post(emulator, "DescribeInstances", {}))["Error"]["Code"] == "InvalidAction"
    assert response_of(signed_post(emulator, "GetGroupList", {}, version="2019-01-01"))["Error"]["Code"] == "NoSuchVersion"


def test_a_group_of_model_version_2_answers_for_its_persons_with_2(sdk: Any) -> None:
    assert sdk_call(sdk, "CreateGroup", {"GroupId": "old", "GroupName": "Old", "FaceModelVersion": "2.0"}).FaceModelVersion == "2.0"
    person = sdk_call(sdk, "CreatePerson", {"GroupId": "old", "PersonId": "7", "PersonName": "Seven", "Image": b64(FACE_JPEG)})
    added = sdk_call(sdk, "CreateFace", {"PersonId": "7", "Images": [b64(variant("half"))]})
    assert (person.FaceModelVersion, added.FaceModelVersion) == ("2.0", "2.0")
    assert sdk_call(sdk, "GetPersonGroupInfo", {"PersonId": "7"}).FaceModelVersion == "2.0"


def test_update_timestamp_follows_changes_to_the_group(staff: Any) -> None:
    before = sdk_call(staff, "GetGroupList", {}).GroupInfos[0]
    sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(variant("half"))]})
    after = sdk_call(staff, "GetGroupList", {}).GroupInfos[0]
    assert after.CreationTimestamp == before.CreationTimestamp and after.UpdateTimestamp > before.UpdateTimestamp


# --- the emulations: SearchFaces scores, FaceMatchThreshold, QualityControl, UniquePersonControl ----------------


def test_search_faces_scores_identical_100_and_anything_else_clearly_lower(staff: Any) -> None:
    sdk_call(staff, "CreatePerson", {"GroupId": "staff", "PersonId": "2002", "PersonName": "Eileen", "Image": b64(FACE_PNG)})
    ours = sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(variant("crop"))]}).SucFaceIds[0]

    def search(image: bytes, **extra: Any) -> Any:
        return sdk_call(staff, "SearchFaces", {"GroupIds": ["staff"], "Image": b64(image), **extra})

    exact = search(variant("crop"), NeedPersonInfo=1)
    assert exact.FaceNum == 3 and exact.FaceModelVersion == "3.0" and len(exact.Results) == 1
    best, other = exact.Results[0].Candidates
    assert (best.PersonId, best.FaceId, best.Score) == ("1001", ours, 100)  # one candidate per person: its best face
    assert other.PersonId == "2002" and other.Score < 90
    assert best.PersonName == "Grace" and [g.GroupId for g in best.PersonGroupInfos] == ["staff"]
    resized = search(variant("half")).Results[0].Candidates
    assert resized[0].PersonId == "1001" and 80 < resized[0].Score <= 90 and resized[1].Score < resized[0].Score
    assert search(variant("half"), MaxPersonNum=1, NeedPersonInfo=0).Results[0].Candidates[0].PersonName is None
    assert [c.PersonId for c in search(variant("half"), FaceMatchThreshold=80).Results[0].Candidates] == ["1001"]
    assert search(variant("blur"), QualityControl=1).Results[0].RetCode == -1601


def test_face_match_threshold_passes_one_photo_and_can_refuse_another_person(staff: Any) -> None:
    same = sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(variant("half")), b64(variant("crop"))], "FaceMatchThreshold": 80})
    assert same.RetCode == [0, 0]  # resized and cropped variants of the person's photo pass even a strict threshold
    refused = sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_PNG), b64(variant("half"))], "FaceMatchThreshold": 80})
    assert refused.RetCode == [-1604, 0] and refused.SucIndexes == [1]  # another person, refused by an explicit threshold
    assert sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_PNG)]}).RetCode == [0]  # default 60: passes


def test_quality_control_levels_follow_blur_and_exposure(staff: Any) -> None:
    def codes(level: int) -> list[int]:
        images = [b64(FACE_JPEG), b64(variant("dark")), b64(variant("blur"))]
        return list(sdk_call(staff, "CreateFace", {"PersonId": "1001", "Images": images, "QualityControl": level, "FaceMatchThreshold": 0}).RetCode)

    assert codes(1) == [0, 0, -1601]  # very blurry fails even the lowest level
    sdk_call(staff, "DeleteFace", {"PersonId": "1001", "FaceIds": sdk_call(staff, "GetPersonBaseInfo", {"PersonId": "1001"}).FaceIds[1:]})
    assert codes(3) == [0, -1601, -1601]  # badly exposed fails the high level


def test_unique_person_control_names_the_similar_person_instead_of_creating(staff: Any) -> None:
    answer = sdk_call(staff, "CreatePerson", {"GroupId": "staff", "PersonId": "2002", "PersonName": "Twin", "Image": b64(FACE_JPEG),
                                              "UniquePersonControl": 4})
    assert answer.SimilarPersonId == "1001" and not answer.FaceId
    assert sdk_error(staff, "GetPersonBaseInfo", {"PersonId": "2002"}) == "InvalidParameterValue.PersonIdNotExist"
    created = sdk_call(staff, "CreatePerson", {"GroupId": "staff", "PersonId": "2002", "PersonName": "Eileen", "Image": b64(FACE_PNG),
                                               "UniquePersonControl": 4})
    assert created.FaceId and created.SimilarPersonId == ""


def test_face_prints_survive_a_restart_with_a_state_file(tmp_path: Path) -> None:
    def serve() -> Any:
        server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, state_file=tmp_path / "iai.json")
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    first = serve()
    seed_person(client_for(first), "1001", FACE_JPEG)
    first.shutdown()
    first.server_close()
    second = serve()
    try:
        found = sdk_call(sdk_client(second), "SearchFaces", {"GroupIds": ["staff"], "Image": b64(FACE_JPEG)})
        assert found.Results[0].Candidates[0].Score == 100
    finally:
        second.shutdown()
        second.server_close()


# --- the gateway: region, token, service scope, clock, account, rate ---------------------------------------------


@pytest.mark.parametrize(("api_version", "region", "code"), [
    ("2020-03-03", "", "MissingParameter"),
    ("2020-03-03", "mars-north-1", "UnsupportedRegion"),
    ("2018-03-01", "mars-north-1", "UnsupportedRegion"),
    ("2018-03-01", "", None),
    ("2020-03-03", "ap-singapore", None),
])
def test_region_is_required_by_2020_03_03_and_must_be_an_iai_region(emulator: Any, api_version: str, region: str, code: str | None) -> None:
    sdk = sdk_client(emulator, api_version, region)
    if code is None:
        assert sdk_call(sdk, "GetGroupList", {}).GroupNum == 0
    else:
        assert sdk_error(sdk, "GetGroupList", {}) == code


@pytest.fixture
def token_emulator() -> Iterator[Any]:
    """An emulator whose account takes temporary credentials with session token `tok-1`."""
    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, session_token="tok-1")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("token", "code"), [("tok-1", None), (None, "AuthFailure.TokenFailure"), ("tok-0", "AuthFailure.TokenFailure")])
def test_session_token_is_checked(token_emulator: Any, version: str, token: str | None, code: str | None) -> None:
    sdk = sdk_client(token_emulator, version, token=token)
    if code is None:
        assert sdk_call(sdk, "GetGroupList", {}).GroupNum == 0
    else:
        assert sdk_error(sdk, "GetGroupList", {}) == code


def test_credential_scope_must_name_the_iai_service(emulator: Any) -> None:
    assert response_of(signed_post(emulator, "GetGroupList", {}))["GroupNum"] == 0
    assert response_of(signed_post(emulator, "GetGroupList", {}, service="cvm"))["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_signature_expire_gives_the_documented_text_and_the_clock_only_in_the_date_header(emulator: Any) -> None:
    reply = signed_post(emulator, "GetGroupList", {}, timestamp=int(time.time()) - 1000)
    error = response_of(reply)["Error"]
    assert error["Code"] == "AuthFailure.SignatureExpire"
    assert error["Message"].startswith("Signature expired. Timestamp and server time cannot differ by more than five minutes.")
    assert not re.search(r"\d{9,}", error["Message"])  # no server time in the text
    server_time = email.utils.parsedate_to_datetime(reply.headers["Date"]).timestamp()
    assert abs(server_time - time.time()) < 5


def test_wrong_key_and_unknown_secret_id_are_refused(staff: Any, emulator: Any) -> None:
    assert sdk_error(sdk_client(emulator, key="wrong-key"), "GetGroupList", {}) == "AuthFailure.SignatureFailure"
    assert response_of(signed_post(emulator, "GetGroupList", {}, secret_id="AKIDunknown"))["Error"]["Code"] == "AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize(("condition", "code"), [
    ("in_arrears", "ResourceUnavailable.InArrears"), ("not_activated", "ResourceUnavailable.NotExist"),
    ("frozen", "ResourceUnavailable.Freeze"), ("stopped", "ResourceUnavailable.StopUsing"),
    ("low_balance", "ResourceUnavailable.LowBalance"), ("key_disabled", "AuthFailure.SecretIdNotFound"),
    ("unauthorized", "AuthFailure.UnauthorizedOperation"),
])
def test_account_condition_answers_every_signed_request_until_ok(staff: Any, emulator: Any, condition: str, code: str) -> None:
    control(emulator, account=condition)
    for action, params in (("GetGroupList", {}), ("GetPersonBaseInfo", {"PersonId": "1001"}),
                           ("CreateFace", {"PersonId": "1001", "Images": [b64(FACE_JPEG)]})):
        assert sdk_error(staff, action, params) == code
    control(emulator, account="ok")
    assert sdk_call(staff, "GetGroupList", {}).GroupNum == 1


def test_rate_limit_per_action_leaves_other_actions_alone(staff: Any, emulator: Any) -> None:
    control(emulator, qps_limit={"GetPersonBaseInfo": 1}, reset_stats=True)
    for _ in range(5):
        signed_post(emulator, "GetPersonBaseInfo", {"PersonId": "1001"})
        signed_post(emulator, "GetGroupList", {})
    counts = stats(emulator)
    assert counts.get("error.GetPersonBaseInfo.RequestLimitExceeded", 0) >= 1
    assert counts["ok.GetGroupList"] == 5 and "error.GetGroupList.RequestLimitExceeded" not in counts
    control(emulator, qps_limit={})
    assert sdk_call(staff, "GetPersonBaseInfo", {"PersonId": "1001"}).FaceIds


def test_control_refuses_unknown_keys_and_bad_values(emulator: Any) -> None:
    for update in ({"fail_nxt": 1}, {"apply_after_next": {"ms": 100, "action": "CreateFase"}}, {"account": "broke"},
                   {"apply_after_next": {"ms": 100, "answer": "sometimes"}}, {"other_writer_next": {"when": "before"}},
                   {"error_rate": 2}, {"drop_next": -1}):
        reply = requests.post(emulator.base_url + "/_control", json=update, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"], update
    assert stats(emulator) == {}  # nothing was applied


def test_the_emulator_imports_nothing_of_the_client_but_signing() -> None:
    package = REPO / "agent" / "devtools" / "emulator"
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert {m for m in imported if m.startswith("agent.iai")} == {"agent.iai.signing"}


# --- faults: every ordering a real cloud can produce ---------------------------------------------------------------


def face_body(person: str = "1001", image: bytes = FACE_PNG) -> dict[str, Any]:
    return {"PersonId": person, "Images": [b64(image)]}


def wait_until_pending(emulator: Any, count: int) -> None:
    """Until `count` late applications are scheduled at the emulator (a fact, polled; bounded)."""
    for _ in range(500):
        if state(emulator)["pending"] == count:
            return
        time.sleep(0.01)
    raise AssertionError(f"never {count} pending late application(s)")


def test_apply_after_with_no_answer_lands_later_while_the_person_is_busy(staff: Any, emulator: Any) -> None:
    control(emulator, reset_stats=True, apply_after_next={"ms": 2000, "answer": "never"})
    assert sdk_error(staff, "CreateFace", {"PersonId": "1001", "Images": [b64(FACE_JPEG)] * 5}) == "InvalidParameterValue.UploadFaceNumExceed"
    with pytest.raises(requests.exceptions.ReadTimeout):  # validated at once, applied later, never answered
        signed_post(emulator, "CreateFace", face_body(), timeout=0.5)
    now = state(emulator)
    assert now["pending"] == 1 and len(now["persons"]["1001"]["faces"]) == 1  # not applied yet
    assert sdk_error(staff, "CreateFace", face_body()) == "FailedOperation.ConflictOperation"
    after = settled_state(emulator)
    assert after["pending"] == 0 and len(after["persons"]["1001"]["faces"]) == 2  # it landed
    counts = stats(emulator)
    assert counts["applied_late.CreateFace"] == 1 and counts["never_answered.CreateFace"] == 1


def test_apply_after_with_a_late_answer_answers_only_once_applied(staff: Any, emulator: Any) -> None:
    control(emulator, apply_after_next={"ms": 800, "answer": "late", "count": 1})
    thread, out = in_thread(lambda: response_of(signed_post(emulator, "CreateFace", face_body())))
    wait_until_pending(emulator, 1)
    assert len(faces_of(emulator, "1001")) == 1
    thread.join()
    answer = out[0]
    now = state(emulator)
    assert now["pending"] == 0 and now["persons"]["1001"]["faces"][-1] == answer["SucFaceIds"][0]


def test_apply_after_on_create_person_creates_it_only_later(staff: Any, emulator: Any) -> None:
    control(emulator, apply_after_next={"ms": 800, "action": "CreatePerson"})
    create = {"GroupId": "staff", "PersonId": "2002", "PersonName": "Eileen", "Image": b64(FACE_PNG)}
    thread, out = in_thread(lambda: sdk_call(staff, "CreatePerson", create))
    wait_until_pending(emulator, 1)
    assert sdk_error(staff, "GetPersonBaseInfo", {"PersonId": "2002"}) == "InvalidParameterValue.PersonIdNotExist"
    assert sdk_error(staff, "CreatePerson", create) == "FailedOperation.ConflictOperation"
    thread.join()
    assert faces_of(emulator, "2002") == [out[0].FaceId]


def test_settled_state_reports_what_is_still_pending(staff: Any, emulator: Any) -> None:
    control(emulator, apply_after_next={"ms": 1500, "answer": "never"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        signed_post(emulator, "CreateFace", face_body(), timeout=0.3)
    waiting = requests.get(emulator.base_url + "/_control/state", params={"settled": 1, "timeout": 0.1}, timeout=5).json()
    assert (waiting["settled"], waiting["pending"]) == (False, 1)
    assert len(settled_state(emulator)["persons"]["1001"]["faces"]) == 2


@pytest.mark.parametrize("code", ["InternalError", "FailedOperation.RequestTimeout", "FailedOperation.ServerError",
                                  "FailedOperation.RpcFail", "FailedOperation.UnKnowError"])
def test_apply_then_error_applies_and_answers_the_error(staff: Any, emulator: Any, code: str) -> None:
    control(emulator, reset_stats=True, apply_then_error_next={"code": code})
    assert sdk_error(staff, "CreateFace", face_body()) == code
    assert len(faces_of(emulator, "1001")) == 2 and stats(emulator)["applied_then_error.CreateFace"] == 1


def test_apply_then_error_on_create_person(staff: Any, emulator: Any) -> None:
    control(emulator, apply_then_error_next={"code": "InternalError", "action": "CreatePerson"})
    create = {"GroupId": "staff", "PersonId": "2002", "PersonName": "Eileen", "Image": b64(FACE_PNG)}
    assert sdk_error(staff, "CreatePerson", create) == "InternalError"
    assert len(faces_of(emulator, "2002")) == 1
    assert sdk_error(staff, "CreatePerson", create) == "InvalidParameterValue.PersonIdAlreadyExist"


@pytest.mark.parametrize(("fault", "action", "params"), [
    (1, "CreateFace", face_body()),
    ({"count": 1, "action": "CreatePerson"}, "CreatePerson", {"GroupId": "staff", "PersonId": "2002", "PersonName": "E", "Image": b64(FACE_PNG)}),
])
def test_apply_then_drop_applies_and_closes_without_an_answer(staff: Any, emulator: Any, fault: Any, action: str, params: dict[str, Any]) -> None:
    control(emulator, apply_then_drop_next=fault)
    with pytest.raises(requests.exceptions.ConnectionError):
        signed_post(emulator, action, params)
    person = str(params["PersonId"])
    assert len(faces_of(emulator, person)) == (2 if action == "CreateFace" else 1)


@pytest.mark.parametrize("when", ["before", "after"])
def test_another_writer_adds_a_face_just_before_or_after_ours(staff: Any, emulator: Any, when: str) -> None:
    seed = faces_of(emulator, "1001")
    control(emulator, other_writer_next={"person": "1001", "when": when})
    ours = sdk_call(staff, "CreateFace", face_body(image=variant("crop"))).SucFaceIds
    foreign = foreign_faces(emulator)
    assert len(ours) == 1 and len(foreign) == 1
    expected = [*seed, *foreign, *ours] if when == "before" else [*seed, *ours, *foreign]
    assert faces_of(emulator, "1001") == expected
    found = sdk_call(staff, "SearchFaces", {"GroupIds": ["staff"], "Image": b64(variant("crop"))}).Results[0].Candidates[0]
    assert (found.FaceId, found.Score) == (ours[0], 100)
    assert sdk_call(staff, "CreateFace", face_body()).SucFaceNum == 1  # the fault fired once


def test_emulator_refuses_concurrent_create_face(emulator: Any) -> None:
    """Two clients (no shared lock) on one person: the second gets ConflictOperation, then retries."""
    a, b = client_for(emulator), client_for(emulator, attempts=40)  # b's retries outlast a's late application
    seed_person(a, "1001", FACE_JPEG)
    control(emulator, apply_after_next={"ms": 400, "count": 1, "action": "CreateFace"}, reset_stats=True)
    t = threading.Thread(target=lambda: a.create_face(CreateFaceRequest("1001", [FACE_PNG])))
    t.start()
    wait_until_pending(emulator, 1)
    b.create_face(CreateFaceRequest("1001", [FACE_PNG]))
    t.join()
    assert len(faces_of(emulator, "1001", settled=True)) == 3
    assert stats(emulator)["error.CreateFace.FailedOperation.ConflictOperation"] >= 1


@pytest.mark.parametrize(
    ("fault", "error_key"),
    [({"error_rate": 1.0}, "error.GetPersonBaseInfo.InternalError"), ({"http_500_rate": 1.0}, "http_5xx.GetPersonBaseInfo"),
     ({"drop_rate": 1.0}, "dropped.GetPersonBaseInfo")],
)
def test_rate_based_faults_exhaust_the_retries_then_clear(emulator: Any, fault: dict[str, float], error_key: str) -> None:
    c = client_for(emulator, attempts=3)
    seed_person(c, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, **fault)
    with pytest.raises(CloudUnavailable, match="after 3 attempt"):
        c.get_person_base_info("1001")
    assert stats(emulator)[error_key] == 3
    control(emulator, **{key: 0.0 for key in fault})
    assert c.get_person_base_info("1001").face_ids


def test_latency_flag_delays_every_answer(emulator: Any) -> None:
    c = client_for(emulator)
    c.create_group("g", "G")
    control(emulator, latency_ms=300)
    started = time.monotonic()
    c.get_group_list()
    assert time.monotonic() - started >= 0.3


def test_reset_faults_clears_every_fault(staff: Any, emulator: Any) -> None:
    control(emulator, outage=True, account="frozen", fail_next={"code": "InternalError", "count": 9}, latency_ms=50)
    control(emulator, reset_faults=True)
    assert sdk_call(staff, "GetGroupList", {}).GroupNum == 1


# --- the command ---------------------------------------------------------------------------------------------------


def run_emulator(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent", "emulator", "--secret-id", EMU_ID, "--secret-key", EMU_KEY, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_emulator_command_prints_url_first_and_stops_on_sigterm(tmp_path: Any) -> None:
    state_file = tmp_path / "iai.json"
    proc = run_emulator("--port", "0", "--state", str(state_file), "--no-face-check")
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")

        class Server:
            base_url = url

        c = client_for(Server())
        c.create_group("g1", "G1")
        assert [g.group_id for g in c.get_group_list().groups] == ["g1"]
        assert requests.get(url + "/_control/state", timeout=5).json()["groups"]["g1"]["GroupName"] == "G1"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert "g1" in state_file.read_text()  # persisted
    assert EMU_KEY not in (proc.stderr.read() if proc.stderr else "")  # type: ignore[union-attr]


def test_emulator_command_on_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_emulator("--port", str(busy.getsockname()[1]), "--no-face-check")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "port is in use" in err and "Traceback" not in err


def test_emulator_command_serves_on_ipv6_loopback() -> None:
    proc = run_emulator("--host", "::1", "--port", "0", "--no-face-check")
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://[::1]:"), proc.stderr.read() if not url and proc.stderr else url

        class Server:
            base_url = url

        assert response_of(signed_post(Server(), "GetGroupList", {}))["GroupNum"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
