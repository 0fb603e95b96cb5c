"""The IAI client against the emulator: every error class, every fault, local validation, logging."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from typing import Any

import pytest

from agent.errors import ErrorCode
from agent.iai.errors import (
    CloudAuthError,
    CloudRateLimited,
    CloudRejected,
    CloudUnavailable,
    PersonFaceLimit,
    PersonNotFound,
)
from agent.iai.limits import ImageRejected
from agent.iai.models import CreateFaceRequest, CreatePersonRequest
from agent.iai.transport import Credentials
from agent.logs import SECRETS, setup_logging
from agent.retry import RetryPolicy, TokenBucket
from tests.conftest import DATA, EMU_KEY
from tests.iai_helpers import REGION, client_for, control, faces_of, seed_person, stats

FACE_JPEG = (DATA / "grace_hopper.jpg").read_bytes()
FACE_PNG = (DATA / "astronaut.png").read_bytes()
NO_FACE = (DATA / "rocket.jpg").read_bytes()


# --- our client: every error class --------------------------------------------------------------------


@pytest.fixture
def client(emulator: Any) -> Any:
    c = client_for(emulator)
    yield c
    c.close()


def test_create_face_happy_path_with_both_versions(emulator: Any) -> None:
    for version in ("2018-03-01", "2020-03-03"):
        c = client_for(emulator, version=version, region=REGION)  # 2020-03-03 requires a region
        person = f"p-{version}"
        seed_person(c, person, FACE_JPEG)
        result = c.create_face(CreateFaceRequest(person, [FACE_PNG], face_match_threshold=60, quality_control=1, need_rotate_detection=False))
        assert result.suc_face_num == 1 and result.ret_code == [0] and result.suc_indexes == [0]
        assert result.suc_face_rects[0].width > 0 and result.face_model_version == "3.0" and result.request_id
        assert faces_of(emulator, person)[-1] == result.suc_face_ids[0]


def test_per_image_ret_codes(client: Any, emulator: Any) -> None:
    seed_person(client, "1001", FACE_JPEG)
    control(emulator, mismatch_next={"1001": 1})
    result = client.create_face(CreateFaceRequest("1001", [FACE_JPEG, NO_FACE]))
    assert result.ret_code == [-1604, -1101] and result.suc_face_num == 0
    control(emulator, low_quality_next={"1001": 1})
    assert client.create_face(CreateFaceRequest("1001", [FACE_JPEG])).ret_code == [-1601]


@pytest.mark.parametrize(
    ("setup", "action", "error", "contract_code", "message"),
    [
        ("wrong_key", "info", CloudAuthError, ErrorCode.CLOUD_AUTH, "tencentcloud_secret_key"),
        ("wrong_id", "info", CloudAuthError, ErrorCode.CLOUD_AUTH, "tencentcloud_secret_id"),
        ("none", "info", PersonNotFound, ErrorCode.PERSON_NOT_FOUND, "person nobody does not exist: create it first or send create_person"),
        ("full", "face", PersonFaceLimit, ErrorCode.PERSON_FACE_LIMIT, "already has 5 faces"),
        ("none", "person_no_group", CloudRejected, ErrorCode.CLOUD_REJECTED, "group ghosts does not exist"),
        ("frozen", "info", CloudRejected, ErrorCode.CLOUD_REJECTED, "account is frozen"),
    ],
)
def test_error_classes_map_to_contract_codes_without_retry(
    emulator: Any, setup: str, action: str, error: type, contract_code: ErrorCode, message: str
) -> None:
    good = client_for(emulator)
    seed_person(good, "1001", FACE_JPEG)
    if setup == "full":
        good.create_face(CreateFaceRequest("1001", [FACE_JPEG] * 4))
    if setup == "frozen":
        control(emulator, fail_next={"code": "ResourceUnavailable.Freeze", "count": 1})
    c = {"wrong_key": client_for(emulator, key="bad-key"), "wrong_id": client_for(emulator)}.get(setup, good)
    if setup == "wrong_id":
        c.transport.credentials = Credentials("AKIDunknown", EMU_KEY)
    control(emulator, reset_stats=True)
    with pytest.raises(error) as info:
        if action == "info":
            c.get_person_base_info("nobody" if setup == "none" else "1001")
        elif action == "face":
            c.create_face(CreateFaceRequest("1001", [FACE_JPEG]))
        else:
            c.create_person(CreatePersonRequest("ghosts", "Ghost", "2002", image=FACE_JPEG))
    assert info.value.code == contract_code and not info.value.retryable
    assert message in info.value.message
    assert info.value.cloud_code and info.value.request_id
    sent = sum(v for k, v in stats(emulator).items() if k.startswith("requests."))
    assert sent <= 2  # one call (plus CreateFace's up-front read) — never retried


CONTENT_REFUSALS = [
    ("FailedOperation.FaceQualityNotQualified", ErrorCode.CLOUD_QUALITY, "quality control"),
    ("InvalidParameterValue.NoFaceInPhoto", ErrorCode.NO_FACE, "no face"),
    ("FailedOperation.FaceSizeTooSmall", ErrorCode.FACE_TOO_SMALL, "move closer"),
    ("FailedOperation.ImageFacedetectFailed", ErrorCode.NO_FACE, "could not detect a face"),
]


@pytest.mark.parametrize("action", ["CreateFace", "CreatePerson"])
@pytest.mark.parametrize(("cloud_code", "contract_code", "message"), CONTENT_REFUSALS)
def test_a_refusal_of_the_image_content_is_never_resent_and_keeps_its_code(
    client: Any, emulator: Any, action: str, cloud_code: str, contract_code: ErrorCode, message: str,
) -> None:
    seed_person(client, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, fail_next={"code": cloud_code, "count": 4, "action": action})
    with pytest.raises(CloudRejected) as info:
        if action == "CreateFace":
            client.create_face(CreateFaceRequest("1001", [FACE_PNG]))
        else:
            client.create_person(CreatePersonRequest("staff", "New", "2002", image=FACE_PNG))
    error = info.value
    assert (error.code, error.cloud_code, error.resend) == (contract_code, cloud_code, False)
    assert error.retryable and message in error.message  # the operator may try again with a new capture
    assert stats(emulator)[f"requests.{action}"] == 1  # the same bytes are never sent twice


def test_retryable_errors_are_retried_then_succeed(client: Any, emulator: Any) -> None:
    seed_person(client, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, fail_next=[{"code": "InternalError", "count": 1, "action": "GetPersonBaseInfo"},
                                                   {"code": "FailedOperation.ConflictOperation", "count": 1, "action": "GetPersonBaseInfo"}])
    assert client.get_person_base_info("1001").face_ids
    assert stats(emulator)["requests.GetPersonBaseInfo"] == 3


def test_retries_stay_within_max_attempts(emulator: Any) -> None:
    c = client_for(emulator, attempts=3)
    seed_person(c, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, fail_next={"code": "FailedOperation.ServerError", "count": 100})
    with pytest.raises(CloudUnavailable) as info:
        c.get_person_base_info("1001")
    assert info.value.code == ErrorCode.CLOUD_UNAVAILABLE and "after 3 attempt(s)" in info.value.message
    assert stats(emulator)["requests.GetPersonBaseInfo"] == 3


def test_retries_stay_within_the_deadline(emulator: Any) -> None:
    """On the transport's own clock (here one that only its waits move): it never waits past the deadline."""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    c = client_for(emulator, attempts=50, deadline=1.0, monotonic=lambda: now[0], sleep=sleep)
    c.transport.policy = RetryPolicy(max_attempts=50, deadline_s=1.0, base_s=0.2, max_s=0.2)
    seed_person(c, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, outage=True)
    with pytest.raises(CloudUnavailable):
        c.get_person_base_info("1001")
    assert now[0] <= 1.0 and len(waits) == stats(emulator)["requests.GetPersonBaseInfo"] - 1
    assert 2 <= stats(emulator)["requests.GetPersonBaseInfo"] < 50


def test_rate_limited_is_retried_at_least_a_second_apart_and_reported(emulator: Any) -> None:
    c = client_for(emulator, attempts=2, deadline=5)
    seed_person(c, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, fail_next={"code": "RequestLimitExceeded", "count": 10})
    started = time.monotonic()
    with pytest.raises(CloudRateLimited) as info:
        c.get_person_base_info("1001")
    assert time.monotonic() - started >= 1.0
    assert info.value.code == ErrorCode.CLOUD_RATE_LIMITED
    assert stats(emulator)["requests.GetPersonBaseInfo"] == 2


def test_qps_limit_of_the_emulator_is_absorbed_by_retries(emulator: Any) -> None:
    c = client_for(emulator, attempts=6, deadline=15)
    seed_person(c, "1001", FACE_JPEG)
    control(emulator, qps_limit=3, reset_stats=True)
    results = []

    def worker() -> None:
        results.append(len(c.get_person_base_info("1001").face_ids))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 8
    assert stats(emulator).get("error.GetPersonBaseInfo.RequestLimitExceeded", 0) >= 1


def test_http_500_on_idempotent_call_is_retried(client: Any, emulator: Any) -> None:
    seed_person(client, "1001", FACE_JPEG)
    control(emulator, reset_stats=True, http_500_next=2)
    assert client.get_person_base_info("1001").person_name == "Person 1001"
    assert stats(emulator)["requests.GetPersonBaseInfo"] == 3


def test_signature_expire_corrects_the_clock_and_retries_once(emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    c = client_for(emulator, clock=lambda: time.time() - 1000)
    with caplog.at_level(logging.WARNING):
        seed_person(c, "1001", FACE_JPEG)
    assert abs(c.transport.clock_offset_s - 1000) < 5  # learnt from the answer's Date header
    assert re.search(r"device clock is -(99[5-9]|100[0-5]) s off", caplog.text), caplog.text
    control(emulator, reset_stats=True)
    c.get_person_base_info("1001")
    assert stats(emulator).get("error.GetPersonBaseInfo.AuthFailure.SignatureExpire", 0) == 0  # later calls are signed right


def test_local_rate_limiter_paces_calls(client: Any, emulator: Any) -> None:
    now = [0.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        assert bucket.acquire()
    assert now[0] == pytest.approx(2.0)  # 2 free, then 4 at 2/s
    assert not bucket.acquire(timeout=0.1)




# --- local validation before any call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "1-4 images"),
        ([FACE_JPEG] * 5, "1-4 images"),
        ([b"GIF89a" + b"\0" * 100], "GIF"),
        ([b"\xff\xd8\xffgarbage"], "not a decodable image"),
        ([b"plain text"], "not a JPEG, PNG or BMP"),
    ],
)
def test_bad_requests_fail_locally_without_a_call(client: Any, emulator: Any, images: list[bytes], message: str) -> None:
    control(emulator, reset_stats=True)
    with pytest.raises(ImageRejected, match=message):
        client.create_face(CreateFaceRequest("1001", images))
    assert not any(k.startswith("requests.") for k in stats(emulator))


def test_tiny_and_oversized_images_fail_locally(client: Any) -> None:
    import cv2
    import numpy as np

    tiny = cv2.imencode(".jpg", np.zeros((50, 200, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageRejected, match="short side must be >= 64"):
        client.create_face(CreateFaceRequest("1001", [tiny]))
    wide_png = cv2.imencode(".png", np.zeros((80, 2100, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageRejected, match="long side of a PNG must be <= 2000"):
        client.create_face(CreateFaceRequest("1001", [wide_png]))


@pytest.mark.parametrize("person", ["", "a" * 65, "bad id", "名字", "x/y"])
def test_person_id_rules(client: Any, person: str) -> None:
    with pytest.raises(ImageRejected, match="person_id"):
        client.create_face(CreateFaceRequest(person, [FACE_JPEG]))


def test_body_over_10_mb_fails_locally(client: Any) -> None:
    with pytest.raises(ImageRejected, match="at most 10 MB"):
        client.transport.call("CreateFace", {"PersonId": "1001", "Images": ["A" * (11 * 1024 * 1024)]}, idempotent=False)


# --- secrets and images never logged; RequestIds always --------------------------------------------


def test_client_logs_request_ids_but_no_secret_or_image(emulator: Any) -> None:
    stream = io.StringIO()
    SECRETS.add(EMU_KEY)
    setup_logging("DEBUG", "text", stream)
    try:
        c = client_for(emulator)
        seed_person(c, "1001", FACE_JPEG)
        control(emulator, fail_next={"code": "InternalError", "count": 1, "action": "GetPersonBaseInfo"})
        c.create_face(CreateFaceRequest("1001", [FACE_PNG]))
        c.get_person_base_info("1001")
    finally:
        setup_logging("INFO", "text")
    out = stream.getvalue()
    assert "RequestId" in out and "CreateFace" in out
    assert EMU_KEY not in out and "Signature=" not in out
    import base64

    assert base64.b64encode(FACE_PNG).decode()[:100] not in out


def test_token_bucket_backs_off_on_throttling_and_recovers() -> None:
    bucket = TokenBucket(rate=8, burst=1, clock=lambda: 0.0, sleep=lambda s: None)
    bucket.slow_down()
    bucket.slow_down()
    assert bucket.rate == 2
    for _ in range(3):
        bucket.slow_down()
    assert bucket.rate == pytest.approx(0.25)
    bucket.slow_down()
    assert bucket.rate == 0.2  # floor
    for _ in range(20):
        bucket.speed_up()
    assert bucket.rate == 8  # never above the configured rate
