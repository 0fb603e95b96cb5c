"""Exactly once at the cloud: what a real service can do to a CreateFace, done by the emulator, and the invariants after.

1. the cloud never holds more faces from one upload than the images it meant to send;
2. an upload reports only faces its own requests created;
3. when it cannot establish what happened it says so (`unknown`) with the candidates;
checked from the emulator's state after every late application has landed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agent.iai.client import IaiClient
from agent.iai.errors import CloudUnavailable
from agent.iai.models import CreateFaceRequest, CreatePersonRequest
from agent.iai.reconcile import Attempt, Reconciler
from agent.iai.upload import NewPerson, ReconcileDeferred, Uploader, UploadProgress
from tests.conftest import DATA
from tests.iai_helpers import client_for, control, seed_person, settled_state, stats

FACE = (DATA / "grace_hopper.jpg").read_bytes()  # the person's first face
CROP = (DATA / "astronaut.png").read_bytes()  # what "this device" uploads (another photo: not what the person holds)
OTHER = (DATA / "camera.png").read_bytes()
WINDOW_S = 4.0  # the read timeout (0.5 s here) plus a settle time, shortened for tests


class Recorded:
    """A journal that keeps every record as the store would hold it (JSON), and can act the moment one is made."""

    def __init__(self, then: Callable[[UploadProgress], None] = lambda progress: None) -> None:
        self.saved: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.then = then

    def record(self, key: str, progress: UploadProgress) -> None:
        self.saved.append(progress.to_json())
        self.keys.append(key)
        self.then(progress)


def uploader_for(emulator: Any, read_timeout: float = 0.5, window: float = WINDOW_S, journal: Recorded | None = None,
                 **kw: Any) -> tuple[IaiClient, Uploader]:
    client = client_for(emulator, read_timeout=read_timeout, **kw)
    return client, Uploader(client, Reconciler(client, window_s=window, poll_s=0.2), journal=journal or Recorded())


def run(uploader: Uploader, person: str, images: list[bytes], new_person: NewPerson | None = None) -> tuple[UploadProgress, list[dict[str, Any]]]:
    journal = uploader.journal
    assert isinstance(journal, Recorded)
    progress = UploadProgress(person, list(images), new_person=new_person)
    uploader.run(progress, f"cmd-{person}")
    return progress, journal.saved


def faces_after_settling(emulator: Any, person: str) -> list[str]:
    return list(settled_state(emulator)["persons"][person]["faces"])


@pytest.fixture
def seeded(emulator: Any) -> list[str]:
    seed_person(client_for(emulator), "1001", FACE)
    return faces_after_settling(emulator, "1001")


def test_a_normal_upload_saves_its_attempt_before_sending(emulator: Any, seeded: list[str]) -> None:
    sent_when_recorded: list[int] = []
    journal = Recorded(then=lambda progress: sent_when_recorded.append(stats(emulator).get("requests.CreateFace", 0)))
    _, uploader = uploader_for(emulator, journal=journal)
    control(emulator, reset_stats=True)
    progress, saved = run(uploader, "1001", [CROP])
    assert len(progress.face_ids) == 1 and progress.ret_codes == [0] and not progress.reconciled
    attempt = saved[-1]["attempt"]
    assert attempt["action"] == "CreateFace" and attempt["known_face_ids"] == seeded and len(attempt["images"]) == 1
    assert sent_when_recorded == [0] and stats(emulator)["requests.CreateFace"] == 1  # recorded, then sent
    assert journal.keys == ["cmd-1001"]  # under the key the caller named (the daemon's: the command id)


@pytest.mark.parametrize("answer", ["late", "never"])
def test_applied_after_the_read_timeout_is_found_not_sent_again(emulator: Any, seeded: list[str], answer: str) -> None:
    _, uploader = uploader_for(emulator)
    control(emulator, reset_stats=True, apply_after_next={"ms": 2500, "answer": answer, "count": 1, "action": "CreateFace"})
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2  # 1: one image, one face
    assert progress.reconciled and progress.face_ids == [after[-1]]  # 2: it is the face this upload created
    assert stats(emulator)["requests.CreateFace"] == 1


@pytest.mark.parametrize("code", ["InternalError", "FailedOperation.RequestTimeout", "FailedOperation.ServerError",
                                  "FailedOperation.RpcFail", "FailedOperation.UnKnowError"])
def test_applied_then_answered_with_a_server_error_is_found_not_sent_again(emulator: Any, seeded: list[str], code: str) -> None:
    _, uploader = uploader_for(emulator)
    control(emulator, reset_stats=True, apply_then_error_next={"code": code, "count": 1, "action": "CreateFace"})
    progress, _ = run(uploader, "1001", [CROP, OTHER])
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 3 and sorted(progress.face_ids) == sorted(after[1:])
    assert stats(emulator)["requests.CreateFace"] == 1


def test_a_server_error_before_applying_adds_nothing_and_is_not_sent_again(emulator: Any, seeded: list[str]) -> None:
    _, uploader = uploader_for(emulator)
    control(emulator, reset_stats=True, fail_next={"code": "InternalError", "count": 1, "action": "CreateFace"})
    progress, _ = run(uploader, "1001", [CROP])
    assert progress.reconciled and progress.face_ids == [] and not progress.unknown  # waited the window, nothing appeared
    assert faces_after_settling(emulator, "1001") == seeded
    assert stats(emulator)["requests.CreateFace"] == 1


def test_a_face_another_writer_added_meanwhile_is_never_claimed(emulator: Any, seeded: list[str]) -> None:
    _, uploader = uploader_for(emulator)
    control(emulator, reset_stats=True, other_writer_next={"person": "1001", "when": "before", "count": 1}, apply_then_drop_next=1)
    progress, _ = run(uploader, "1001", [CROP])
    state = settled_state(emulator)
    after = state["persons"]["1001"]["faces"]
    foreign = set(after) - set(seeded) - set(progress.face_ids)
    assert len(after) == 3 and len(foreign) == 1  # ours and the other writer's
    assert len(progress.face_ids) == 1 and not set(progress.face_ids) & foreign


def test_when_our_request_did_not_land_a_strangers_face_is_not_reported_as_ours(emulator: Any, seeded: list[str]) -> None:
    other_device = client_for(emulator)

    def meanwhile(saved: UploadProgress) -> None:  # between our snapshot and our request, another device adds a face
        if saved.attempt is not None and len(faces_after_settling(emulator, "1001")) == 1:
            other_device.create_face(CreateFaceRequest("1001", [OTHER]))
            control(emulator, fail_next={"code": "InternalError", "count": 1, "action": "CreateFace"})  # ours: not applied

    _, uploader = uploader_for(emulator, journal=Recorded(then=meanwhile))
    control(emulator, reset_stats=True)
    progress = UploadProgress("1001", [CROP])
    uploader.run(progress, "cmd-1001")
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 2  # the other device's face only: ours never landed
    assert progress.reconciled and progress.face_ids == [] and not progress.unknown


def test_when_faces_cannot_be_attributed_the_outcome_is_unknown_with_candidates(emulator: Any, seeded: list[str]) -> None:
    _, uploader = uploader_for(emulator)
    control(emulator, reset_stats=True, apply_then_drop_next=1,
            fail_next={"code": "UnauthorizedOperation", "count": 100, "action": "SearchFaces"})
    progress, _ = run(uploader, "1001", [CROP])
    after = faces_after_settling(emulator, "1001")
    assert progress.unknown and progress.face_ids == [] and progress.candidates == after[1:]
    assert stats(emulator)["requests.CreateFace"] == 1


def test_a_lost_answer_that_cannot_be_checked_waits_and_is_settled_later(emulator: Any, seeded: list[str]) -> None:
    # once the attempt is recorded (and about to go out), the cloud stops answering reads
    journal = Recorded(then=lambda p: control(emulator, fail_next={"code": "InternalError", "count": 1000, "action": "GetPersonBaseInfo"}))
    _, uploader = uploader_for(emulator, journal=journal)
    control(emulator, reset_stats=True, apply_then_drop_next=1)
    progress = UploadProgress("1001", [CROP])
    with pytest.raises(ReconcileDeferred) as info:
        uploader.run(progress, "cmd-1001")
    assert isinstance(info.value.cause, CloudUnavailable) and info.value.progress.attempt is not None
    control(emulator, reset_faults=True)
    resumed = UploadProgress.from_json(journal.saved[-1])  # as after a restart
    journal.then = lambda p: None
    uploader.run(resumed, "cmd-1001")
    assert resumed.reconciled and resumed.face_ids == faces_after_settling(emulator, "1001")[1:]
    assert stats(emulator)["requests.CreateFace"] == 1


def test_a_lost_create_person_answer_is_settled_and_the_rest_added_once(emulator: Any) -> None:
    client, uploader = uploader_for(emulator)
    client.create_group("staff", "Staff")
    control(emulator, reset_stats=True, apply_then_drop_next={"count": 1, "action": "CreatePerson"})
    progress, _ = run(uploader, "2002", [CROP, OTHER], NewPerson("staff", "Ada"))
    after = faces_after_settling(emulator, "2002")
    assert progress.person_created and progress.reconciled and progress.face_ids == after and len(after) == 2
    assert stats(emulator)["requests.CreatePerson"] == 1 and stats(emulator)["requests.CreateFace"] == 1


def test_a_person_somebody_else_created_is_not_reported_as_ours(emulator: Any) -> None:
    client, uploader = uploader_for(emulator)
    seed_person(client, "3003", FACE)  # created by another device, with another photo
    reconciler = uploader.reconciler
    attempt = Attempt("CreatePerson", "3003", (CROP,), None, client.transport.now() - WINDOW_S, group_id="staff")
    settled = reconciler.settle(attempt)
    assert settled.person_exists and settled.attributable and settled.ours == () and len(settled.person_face_ids) == 1


def test_two_devices_enrolling_one_person_at_once_each_report_only_their_own(emulator: Any, seeded: list[str]) -> None:
    """No shared lock: the emulator refuses the concurrent CreateFace (ConflictOperation), which is retried."""
    _, first = uploader_for(emulator, read_timeout=5.0, attempts=8)
    _, second = uploader_for(emulator, read_timeout=5.0, attempts=8)
    control(emulator, reset_stats=True, apply_after_next={"ms": 600, "answer": "late", "count": 2, "action": "CreateFace"})
    results: dict[str, UploadProgress] = {}
    threads = [threading.Thread(target=lambda name=name, up=up, image=image: results.update({name: run(up, "1001", [image])[0]}))
               for name, up, image in (("a", first, CROP), ("b", second, OTHER))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = faces_after_settling(emulator, "1001")
    assert len(after) == 3
    assert set(results["a"].face_ids).isdisjoint(results["b"].face_ids)
    assert set(results["a"].face_ids) | set(results["b"].face_ids) == set(after[1:])
    assert any(k.startswith("error.CreateFace.FailedOperation.ConflictOperation") for k in stats(emulator))


def test_when_searchfaces_cannot_list_the_person_the_outcome_is_unknown_not_a_guess(emulator: Any) -> None:
    """100 other persons hold the very image we upload (score 100 each): SearchFaces' 100 candidates may all be them."""
    client, uploader = uploader_for(emulator)
    client.create_group("staff", "Staff")
    for n in range(100):
        client.create_person(CreatePersonRequest("staff", f"Look-alike {n}", f"look-{n}", image=CROP))
    seed_person(client, "1001", FACE)  # listed after them among equal scores
    control(emulator, reset_stats=True, apply_then_drop_next=1)
    progress, _ = run(uploader, "1001", [CROP])
    landed = faces_after_settling(emulator, "1001")[1:]
    assert len(landed) == 1  # it did land
    assert progress.unknown and progress.face_ids == [] and progress.candidates == landed  # but nothing is claimed or denied
