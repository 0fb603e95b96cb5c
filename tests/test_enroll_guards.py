"""What an enrollment writes: one human one PersonId (UniquePersonControl, duplicate_person), and a cloud refusal of an
image's content answered by its own code, never by sending the same bytes again. `faceagent enroll` against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.iai.models import CreatePersonResponse
from tests.conftest import DATA, EMU_ID, EMU_KEY
from tests.iai_helpers import control, state, stats

GRACE = str(DATA / "grace_hopper.jpg")


def enroll(tmp_path: Path, emulator: Any, *args: str, enroll_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """`faceagent enroll --json`: the result object, with the exit code under `exit`."""
    import yaml

    cfg = tmp_path / "enroll.yaml"
    cfg.write_text(yaml.safe_dump({"device_id": "cli", "state_dir": str(tmp_path), "cloud": {"endpoint": emulator.base_url},
                                   "camera": {"type": "files", "path": GRACE}, "enroll": enroll_cfg or {}}))
    env = {"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY}
    proc = subprocess.run([sys.executable, "-m", "agent", "enroll", "--config", str(cfg), "--json", *args],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.stdout, proc.stderr
    return {**json.loads(proc.stdout), "exit": proc.returncode}


# --- one human, one PersonId ------------------------------------------------------------------------------------------


def test_the_same_face_under_a_new_person_id_ends_duplicate_person(emulator: Any, person: str, tmp_path: Path) -> None:
    control(emulator, reset_stats=True)
    result = enroll(tmp_path, emulator, "--person-id", "2002", "--create-person", "staff", "--person-name", "Grace again", "--image", GRACE)
    assert (result["exit"], result["status"], result["error"]["code"]) == (1, "failed", "duplicate_person")
    assert result["similar_person_id"] == person and result["face_ids"] == [] and "person_created" not in result
    assert f"enroll with person_id {person}" in result["error"]["message"] and not result["error"]["retryable"]
    assert "2002" not in state(emulator)["persons"] and stats(emulator)["requests.CreatePerson"] == 1  # claimed nothing, sent once


def test_unique_person_control_is_on_by_default_and_can_be_turned_off(emulator: Any, person: str, tmp_path: Path) -> None:
    per_command = enroll(tmp_path, emulator, "--person-id", "2002", "--create-person", "staff", "--unique-person-control", "0",
                         "--image", GRACE)
    assert per_command["status"] == "succeeded" and per_command["person_created"]
    by_config = enroll(tmp_path, emulator, "--person-id", "2003", "--create-person", "staff", "--image", GRACE,
                       enroll_cfg={"unique_person_control": 0})
    assert by_config["status"] == "succeeded" and set(state(emulator)["persons"]) == {person, "2002", "2003"}


def test_a_new_person_unlike_any_other_is_created(emulator: Any, person: str, tmp_path: Path) -> None:
    result = enroll(tmp_path, emulator, "--person-id", "3003", "--create-person", "staff", "--person-name", "Eileen",
                    "--image", str(DATA / "astronaut.png"))
    assert result["status"] == "succeeded" and result["person_created"] and state(emulator)["persons"]["3003"]["name"] == "Eileen"


def test_person_name_without_create_person_is_a_usage_error(emulator: Any, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "enroll", "--person-id", "1001", "--person-name", "Ada"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--create-person GROUP_ID" in proc.stderr


@pytest.mark.parametrize("answer", [{"FaceId": "", "SimilarPersonId": "1001", "FaceRect": None, "RequestId": "r"},
                                    {"FaceId": None, "SimilarPersonId": "1001", "RequestId": "r"}])
def test_an_answer_shaped_like_iais_duplicate_reads_as_not_created(answer: dict[str, Any]) -> None:
    parsed = CreatePersonResponse.parse(answer)
    assert (parsed.face_id, parsed.similar_person_id) == (None, "1001")


# --- a refusal of what the image shows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cloud_code", "code"), [("FailedOperation.FaceQualityNotQualified", "cloud_quality"),
                                                  ("InvalidParameterValue.NoFaceInPhoto", "no_face"),
                                                  ("FailedOperation.FaceSizeTooSmall", "face_too_small")])
def test_a_content_refusal_is_answered_by_its_code_and_never_resent(emulator: Any, person: str, tmp_path: Path, cloud_code: str,
                                                                     code: str) -> None:
    control(emulator, reset_stats=True, fail_next={"code": cloud_code, "count": 4, "action": "CreateFace"})
    result = enroll(tmp_path, emulator, "--person-id", person, "--image", GRACE)
    assert (result["status"], result["error"]["code"], result["error"]["cloud_code"]) == ("failed", code, cloud_code)
    assert result["error"]["retryable"]  # a new capture may pass
    assert stats(emulator)["requests.CreateFace"] == 1


def test_after_a_content_refusal_a_fresh_capture_is_sent_never_the_same_bytes(emulator: Any, person: str, tmp_path: Path) -> None:
    """The camera (a files camera with sensor noise: every read differs, as live frames do) gives new bytes to send."""
    control(emulator, reset_stats=True, fail_next={"code": "FailedOperation.FaceQualityNotQualified", "count": 1, "action": "CreateFace"})
    result = enroll(tmp_path, emulator, "--person-id", person)
    assert result["status"] == "succeeded" and stats(emulator)["requests.CreateFace"] == 2
    assert len(state(emulator)["persons"][person]["faces"]) == 2


def test_no_request_body_is_ever_sent_twice_across_fresh_captures(emulator: Any, person: str, tmp_path: Path) -> None:
    """In process, every CreateFace body as it went on the wire: each refused capture is replaced by new bytes."""
    from agent.app import build_cloud
    from agent.camera.camera import Camera, build_source
    from agent.config import config_from_mapping
    from agent.iai.upload import NoJournal
    from agent.service.protocol import EnrollCommand
    from agent.vision.detector import detector_from_config

    environ = {"TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY}
    config = config_from_mapping({"device_id": "cli", "state_dir": str(tmp_path), "cloud": {"endpoint": emulator.base_url},
                                  "camera": {"type": "files", "path": GRACE}, "enroll": {"min_capture_gap_s": 0.05}}, environ)
    client, uploader = build_cloud(config, NoJournal(), environ)
    sent: list[bytes] = []
    client.transport.session.hooks["response"].append(
        lambda response, *a, **k: sent.append(response.request.body) if response.request.headers["X-TC-Action"] == "CreateFace" else None)
    camera = Camera(build_source(config.camera), config.camera.fps, None)
    control(emulator, fail_next={"code": "FailedOperation.FaceSizeTooSmall", "count": 2, "action": "CreateFace"})
    progress: list[tuple[str, str]] = []
    try:
        from agent.service.enroller import Enroller

        result = Enroller(config, detector=detector_from_config(config.detector), camera=camera, client=client, uploader=uploader).run(
            EnrollCommand(id="fresh-1", person_id=person, faces=2), progress=lambda state, detail: progress.append((state, detail)))
    finally:
        camera.close()
        client.close()
    assert result.status.value == "succeeded" and len(result.face_ids) == 2
    assert len(sent) == 3 and len(set(sent)) == 3  # three bodies, all different
    images = [set(json.loads(body)["Images"]) for body in sent]
    assert not (images[0] & images[1]) and not (images[0] & images[2]) and not (images[1] & images[2])  # no image sent twice
    assert sum(1 for state, detail in progress if state == "capturing" and "capturing again" in detail) == 2


def test_fresh_captures_after_content_refusals_are_bounded(emulator: Any, person: str, tmp_path: Path) -> None:
    control(emulator, reset_stats=True, fail_next={"code": "InvalidParameterValue.NoFaceInPhoto", "count": 10, "action": "CreateFace"})
    result = enroll(tmp_path, emulator, "--person-id", person)
    assert (result["status"], result["error"]["code"]) == ("failed", "no_face")
    assert stats(emulator)["requests.CreateFace"] == 3  # the first capture and at most two fresh ones


def test_a_per_image_quality_refusal_is_cloud_quality_and_sent_once(emulator: Any, person: str, tmp_path: Path) -> None:
    control(emulator, reset_stats=True, low_quality_next={person: 1})
    result = enroll(tmp_path, emulator, "--person-id", person, "--image", GRACE)
    assert (result["status"], result["error"]["code"], result["ret_codes"]) == ("failed", "cloud_quality", [-1601])
    assert stats(emulator)["requests.CreateFace"] == 1


def test_ctl_sends_unique_person_control_with_create_person(broker: Any, make_agent: Any, emulator: Any, person: str) -> None:
    """The device's default (2) refuses the same face under a new PersonId; the operator's --unique-person-control 0 does not."""
    agent = make_agent(broker, enroll={"unique_person_control": 2})

    def ctl(command_id: str, *extra: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", broker.url, "--device", agent.device_id,
                               "--person-id", "3003", "--create-person", "staff", "--id", command_id, "--json", *extra],
                              capture_output=True, text=True, timeout=90, check=False)
        assert proc.stdout, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    refused = ctl("upc-default")
    assert refused["error"]["code"] == "duplicate_person" and refused["similar_person_id"] == person
    assert ctl("upc-off", "--unique-person-control", "0")["status"] == "succeeded"
    usage = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", broker.url, "--device", agent.device_id,
                            "--person-id", "3003", "--unique-person-control", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "--create-person GROUP_ID" in usage.stderr
