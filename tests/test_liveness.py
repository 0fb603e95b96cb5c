"""Liveness at enrollment: the emulator's DetectLiveFaceAccurate, the client's call, the 3:4 crop, and `faceagent enroll`
with liveness.mode cloud ending spoof_suspected before anything is written."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests

from agent.iai.errors import CloudRejected
from agent.images import read_image
from agent.vision.detector import FaceDetector
from agent.vision.live_crop import LIVE_MIN_FACE_PX, liveness_crop
from tests.conftest import DATA, EMU_ID, EMU_KEY
from tests.iai_helpers import REGION, client_for, control, sdk_call, sdk_client, sdk_error, state, stats

FACE_JPEG = (DATA / "grace_hopper.jpg").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def grey(path: Path, out: Path) -> Path:
    """The colour photo as a grey print would show it to the camera (every pixel without colour)."""
    frame = cv2.cvtColor(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(out), frame)
    return out


# --- the emulator --------------------------------------------------------------------------------------------------


def test_the_emulator_scores_a_colour_face_live_and_a_grey_one_not(emulator: Any, tmp_path: Path) -> None:
    sdk = sdk_client(emulator, "2020-03-03")
    live = sdk_call(sdk, "DetectLiveFaceAccurate", {"Image": b64(FACE_JPEG), "FaceModelVersion": "3.0"})
    assert (live.Score, live.FaceModelVersion) == (90.0, "3.0") and live.RequestId
    printed = grey(DATA / "grace_hopper.jpg", tmp_path / "grey.jpg").read_bytes()
    assert sdk_call(sdk, "DetectLiveFaceAccurate", {"Image": b64(printed)}).Score == 5.0
    control(emulator, liveness_score_next={"score": 39.5, "count": 1})
    assert sdk_call(sdk, "DetectLiveFaceAccurate", {"Image": b64(FACE_JPEG)}).Score == 39.5
    assert sdk_call(sdk, "DetectLiveFaceAccurate", {"Image": b64(FACE_JPEG)}).Score == 90.0  # the rule fired once


@pytest.mark.parametrize(("params", "code"), [
    ({}, "InvalidParameterValue.ImageEmpty"),
    ({"Image": b64((DATA / "rocket.jpg").read_bytes())}, "InvalidParameterValue.NoFaceInPhoto"),
    ({"Image": b64((DATA / "camera.png").read_bytes())}, "FailedOperation.FaceSizeTooSmall"),  # a face of 81x102 px
    ({"Image": b64(FACE_JPEG), "FaceModelVersion": "2.0"}, "InvalidParameterValue.FaceModelVersionIllegal"),
    ({"Image": b64(FACE_JPEG), "Url": "https://example.invalid/a.jpg"}, "FailedOperation.ImageDownloadError"),
])
def test_the_emulator_applies_the_liveness_rules(emulator: Any, params: dict[str, Any], code: str) -> None:
    assert sdk_error(sdk_client(emulator, "2020-03-03"), "DetectLiveFaceAccurate", params) == code


def test_liveness_exists_in_api_2020_03_03_only_and_takes_no_unknown_field(emulator: Any) -> None:
    from tests.iai_helpers import response_of, signed_post

    old = response_of(signed_post(emulator, "DetectLiveFaceAccurate", {"Image": b64(FACE_JPEG)}, version="2018-03-01"))
    assert old["Error"]["Code"] == "InvalidAction"
    extra = response_of(signed_post(emulator, "DetectLiveFaceAccurate", {"Image": b64(FACE_JPEG), "Threshold": 40},
                                    version="2020-03-03", region=REGION))
    assert extra["Error"]["Code"] == "UnknownParameter"


def test_liveness_score_next_is_checked_by_the_control_endpoint(emulator: Any) -> None:
    for bad in ({"score": 101}, {"score": "high"}, {}, {"score": 10, "action": "CreateFace"}):
        reply = requests.post(emulator.base_url + "/_control", json={"liveness_score_next": bad}, timeout=5)
        assert reply.status_code == 400 and "liveness_score_next" in reply.json()["error"]


# --- the client and the crop -----------------------------------------------------------------------------------------


def test_the_client_asks_with_api_2020_03_03_whatever_its_configured_version(emulator: Any) -> None:
    client = client_for(emulator, version="2018-03-01", region=REGION)
    try:
        answer = client.detect_live_face_accurate(FACE_JPEG)
        assert answer.score == 90.0 and answer.request_id
        control(emulator, reset_stats=True, fail_next={"code": "InvalidParameterValue.NoFaceInPhoto", "count": 4,
                                                       "action": "DetectLiveFaceAccurate"})
        with pytest.raises(CloudRejected) as info:
            client.detect_live_face_accurate(FACE_JPEG)
        assert info.value.code.value == "no_face" and stats(emulator)["requests.DetectLiveFaceAccurate"] == 1  # never resent
    finally:
        client.close()


def test_the_liveness_crop_is_3_by_4_from_the_full_frame_and_refuses_a_small_face() -> None:
    detector = FaceDetector()
    frame = read_image(DATA / "grace_hopper.jpg")
    face = max(detector.detect(frame), key=lambda f: f.area)
    image = cv2.imdecode(np.frombuffer(liveness_crop(frame, face, 92), np.uint8), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    assert abs(width / height - 3 / 4) < 0.01 and height <= frame.shape[0]
    again = max(detector.detect(image), key=lambda f: f.area)
    assert min(again.box[2] - again.box[0], again.box[3] - again.box[1]) >= LIVE_MIN_FACE_PX - 12  # not upscaled, the face whole
    small = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    from agent.vision.crop import CropRefused

    with pytest.raises(CropRefused) as info:
        liveness_crop(small, max(detector.detect(small), key=lambda f: f.area), 92)
    assert info.value.code.value == "face_too_small" and "move closer" in info.value.message


# --- faceagent enroll with liveness.mode cloud -------------------------------------------------------------------------


def run_enroll(tmp_path: Path, emulator: Any, *args: str, liveness: dict[str, Any] | None = None) -> dict[str, Any]:
    """`faceagent enroll --json` against the emulator; the result object (and the exit code under `exit`)."""
    import yaml

    cfg = tmp_path / "enroll.yaml"
    cfg.write_text(yaml.safe_dump({"device_id": "cli", "state_dir": str(tmp_path), "cloud": {"endpoint": emulator.base_url},
                                   "camera": {"type": "files", "path": str(DATA / "grace_hopper.jpg")},
                                   "liveness": liveness or {"mode": "cloud"}}))
    env = {"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY}
    proc = subprocess.run([sys.executable, "-m", "agent", "enroll", "--config", str(cfg), "--json", *args],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.stdout, proc.stderr
    return {**json.loads(proc.stdout), "exit": proc.returncode, "stderr": proc.stderr}


def writes(emulator: Any) -> int:
    return sum(v for k, v in stats(emulator).items() if k in ("requests.CreateFace", "requests.CreatePerson"))


def test_a_grey_print_held_to_the_camera_ends_spoof_suspected_and_writes_nothing(emulator: Any, person: str, tmp_path: Path) -> None:
    printed = grey(DATA / "grace_hopper.jpg", tmp_path / "print.jpg")
    control(emulator, reset_stats=True)
    result = run_enroll(tmp_path, emulator, "--person-id", person, "--image", str(printed))
    assert (result["exit"], result["status"], result["error"]["code"]) == (1, "failed", "spoof_suspected")
    assert "liveness score 5" in result["error"]["message"] and not result["error"]["retryable"]
    assert result["liveness"] == {"mode": "cloud", "threshold": 40.0, "scores": [5.0]}
    assert stats(emulator)["requests.DetectLiveFaceAccurate"] == 1 and writes(emulator) == 0
    assert len(state(emulator)["persons"][person]["faces"]) == 1
    assert "liveness: checking 1 image(s)" in result["stderr"]
    text = subprocess.run([sys.executable, "-m", "agent", "enroll", "--config", str(tmp_path / "enroll.yaml"), "--person-id", person,
                           "--image", str(printed)], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY})
    assert "liveness checked: score(s) 5 (threshold 40)" in text.stdout and "spoof_suspected" in text.stdout


@pytest.mark.parametrize(("score", "status"), [(39.9, "failed"), (40.0, "succeeded")])
def test_the_threshold_decides_below_and_at_it(emulator: Any, person: str, tmp_path: Path, score: float, status: str) -> None:
    control(emulator, reset_stats=True, liveness_score_next={"score": score, "count": 1})
    result = run_enroll(tmp_path, emulator, "--person-id", person, "--image", str(DATA / "grace_hopper.jpg"))
    assert result["status"] == status and result["liveness"]["scores"] == [score]
    assert writes(emulator) == (1 if status == "succeeded" else 0)


def test_a_live_face_is_checked_before_the_person_is_created(emulator: Any, person: str, tmp_path: Path) -> None:
    eileen = tmp_path / "eileen.png"  # Eileen Collins' face at 1.5x: over the 112 px the liveness image needs
    cv2.imwrite(str(eileen), cv2.resize(cv2.imread(str(DATA / "astronaut.png")), None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC))
    control(emulator, reset_stats=True, fail_next={"code": "FailedOperation.ImageDecodeFailed", "count": 1, "action": "DetectLiveFaceAccurate"})
    refused = run_enroll(tmp_path, emulator, "--person-id", "3003", "--create-person", "staff", "--person-name", "Eileen",
                         "--image", str(eileen))
    assert refused["status"] == "failed" and refused["error"]["cloud_code"] == "FailedOperation.ImageDecodeFailed"
    assert writes(emulator) == 0 and "3003" not in state(emulator)["persons"]  # nothing written while liveness was unknown
    created = run_enroll(tmp_path, emulator, "--person-id", "3003", "--create-person", "staff", "--person-name", "Eileen",
                         "--image", str(eileen), liveness={"mode": "cloud", "threshold": 70})
    assert created["status"] == "succeeded" and created["person_created"] and created["liveness"]["scores"] == [90.0]


def test_with_liveness_off_nothing_is_asked(emulator: Any, person: str, tmp_path: Path) -> None:
    control(emulator, reset_stats=True)
    result = run_enroll(tmp_path, emulator, "--person-id", person, "--image", str(DATA / "grace_hopper.jpg"), liveness={"mode": "off"})
    assert result["status"] == "succeeded" and "liveness" not in result
    assert "requests.DetectLiveFaceAccurate" not in stats(emulator)


def test_a_face_too_small_for_the_liveness_image_is_refused_before_any_call(emulator: Any, person: str, tmp_path: Path) -> None:
    control(emulator, reset_stats=True)
    result = run_enroll(tmp_path, emulator, "--person-id", person, "--image", str(DATA / "astronaut.png"))  # a face of 94 px
    assert (result["status"], result["error"]["code"]) == ("failed", "face_too_small") and "move closer" in result["error"]["message"]
    assert "requests.DetectLiveFaceAccurate" not in stats(emulator) and writes(emulator) == 0
