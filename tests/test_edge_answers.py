"""Exactly once when HTTP itself or the answer misbehaves after the request was forwarded (and so applied): a redirect,
a 4xx, a success answer that is malformed or claims faces that are not this request's. Each is settled by reading the
person back, never followed, never sent again, never claimed as it stands.

A `HostileProxy` (tests/hostile_proxy.py) sits in front of the emulator: it forwards the request, then answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from agent.iai.errors import CloudError, CloudUnavailable
from agent.iai.upload import NewPerson
from tests.hostile_proxy import HostileProxy
from tests.iai_helpers import client_for, seed_person, stats
from tests.test_upload import CROP, FACE, OTHER, faces_after_settling, run, uploader_for


@pytest.fixture
def proxy(emulator: Any) -> Iterator[HostileProxy]:
    with HostileProxy(emulator.base_url) as p:
        yield p


@pytest.fixture
def seeded(emulator: Any) -> list[str]:
    seed_person(client_for(emulator), "1001", FACE)
    seed_person(client_for(emulator), "1002", CROP)
    return faces_after_settling(emulator, "1001")


def create_face_counted(emulator: Any) -> int:
    return int(stats(emulator).get("requests.CreateFace", 0))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_after_create_face_is_not_followed_and_the_face_is_found(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                            status: int) -> None:
    _, uploader = uploader_for(proxy)
    before = create_face_counted(emulator)
    proxy.arm("CreateFace", status=status, location=emulator.base_url + "/")
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert create_face_counted(emulator) - before == 1  # a 307/308 followed would have sent it again: two faces
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled


@pytest.mark.parametrize("status", [400, 404, 408, 500, 502])
def test_an_error_status_after_create_face_is_settled_by_reading_back(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                      status: int) -> None:
    _, uploader = uploader_for(proxy)
    proxy.arm("CreateFace", status=status)
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled and not progress.unknown


MALFORMED = {
    "ids as a string": lambda r: {**r, "SucFaceIds": "4242"},
    "no ids": lambda r: {k: v for k, v in r.items() if k != "SucFaceIds"},
    "ids not strings": lambda r: {**r, "SucFaceIds": [4242]},
    "count disagrees": lambda r: {**r, "SucFaceNum": 2},
    "ret code not a number": lambda r: {**r, "RetCode": ["x"]},
    "error not an object": lambda r: {**r, "Error": "boom"},
    "a null face rect": lambda r: {**r, "SucFaceRects": [None]},
    "more ids than images": lambda r: {**r, "SucFaceIds": r["SucFaceIds"] * 2, "SucFaceNum": 2},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_success_answer_is_settled_by_reading_back_not_trusted(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                           case: str) -> None:
    _, uploader = uploader_for(proxy)
    proxy.arm("CreateFace", rewrite=MALFORMED[case])
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled


def test_an_answer_nested_beyond_the_parsers_depth_is_settled_by_reading_back(emulator: Any, proxy: HostileProxy,
                                                                             seeded: list[str]) -> None:
    """3 KB of '[' makes json.loads raise RecursionError: an unreadable answer like any other, never a crash."""
    _, uploader = uploader_for(proxy)
    proxy.arm("CreateFace", raw=b"[" * 3000)
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled
    client = client_for(proxy, attempts=1)
    proxy.arm("GetGroupList", raw=b"{" * 3000)  # the health check's read: a cloud error the thread handles
    with pytest.raises(CloudUnavailable):
        client.get_group_list(limit=1)


def test_a_cloud_error_message_is_one_line_whatever_the_answer_says(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A message with line breaks (a hostile proxy's) would write lines of its own into the daemon's log."""
    proxy.arm("GetPersonBaseInfo", rewrite=lambda r: {"Error": {"Code": "InvalidParameterValue.SomethingNew",
                                                                "Message": "boom\nCRITICAL faceagent: forged line\r\n"},
                                                      "RequestId": r.get("RequestId")})
    with caplog.at_level(logging.DEBUG), pytest.raises(CloudError) as raised:
        client_for(proxy, attempts=1).get_person_base_info("1001")
    logged = [r.getMessage() for r in caplog.records if "forged line" in r.getMessage()]
    assert logged and all("\n" not in line and "\r" not in line for line in logged)
    assert "\n" not in raised.value.message


@pytest.mark.parametrize("whose", ["the person's older face", "another person's face"])
def test_a_success_naming_a_face_that_is_not_new_is_not_claimed(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                whose: str) -> None:
    claimed = seeded[0] if whose.startswith("the person") else faces_after_settling(emulator, "1002")[0]
    _, uploader = uploader_for(proxy)
    proxy.arm("CreateFace", rewrite=lambda r: {**r, "SucFaceIds": [claimed]})
    progress, _ = run(uploader, "1001", [OTHER])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and claimed not in progress.face_ids and progress.reconciled


@pytest.mark.parametrize("case", ["no face id", "a number", "the seeded face"])
def test_a_create_person_success_without_a_usable_face_id_is_settled(emulator: Any, proxy: HostileProxy, seeded: list[str],
                                                                     case: str) -> None:
    _, uploader = uploader_for(proxy)
    older = seeded[0]
    rewrite = {"no face id": lambda r: {k: v for k, v in r.items() if k != "FaceId"},
               "a number": lambda r: {**r, "FaceId": 7},
               "the seeded face": lambda r: {**r, "FaceId": older}}[case]
    proxy.arm("CreatePerson", rewrite=rewrite)
    progress, _ = run(uploader, "3003", [FACE], NewPerson("staff", "Person 3003"))
    created = faces_after_settling(emulator, "3003")
    assert len(created) == 1 and progress.face_ids == created and progress.person_created and progress.reconciled


def test_an_answer_trickled_byte_by_byte_is_cut_at_the_attempts_total_deadline(emulator: Any, proxy: HostileProxy,
                                                                               seeded: list[str]) -> None:
    """Each byte arrives within the read timeout, so only a total deadline (connect + read timeout) ends the wait."""
    _, uploader = uploader_for(proxy, read_timeout=1.0)
    proxy.arm("CreateFace", trickle_s=0.5)  # ~80 header bytes: 40 s to the end, 2 s more than any read timeout
    progress, _ = run(uploader, "1001", [CROP])
    assert not proxy.trickle_finished.is_set()  # the upload did not wait for the trickle to end
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled


def test_a_huge_answer_is_not_read_past_the_size_cap(emulator: Any, proxy: HostileProxy, seeded: list[str]) -> None:
    pad = 256 * 1024 * 1024  # a valid answer behind 256 MB of whitespace
    _, uploader = uploader_for(proxy)
    proxy.arm("CreateFace", pad_bytes=pad)
    progress, _ = run(uploader, "1001", [CROP])
    assert proxy.padded_sent < 64 * 1024 * 1024  # the client stopped reading at its cap (socket buffers hold a little)
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2 and progress.face_ids == [after[-1]] and progress.reconciled
