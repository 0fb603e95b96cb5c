"""Exactly once through the real daemon: killed, restarted and raced while the cloud applies late or answers wrong.

Invariants checked from the emulator's state after every late application has landed:
1. the cloud holds no more faces from a command than the images it meant to send;
2. a succeeded/partial result lists only faces its own requests created, and faces_added == len(face_ids);
3. what cannot be established is reported `unknown` with candidates, never as success or as "nothing enrolled";
4. one result per command.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.agent_proc import command, fence, listen, result_for, wait_until
from tests.broker import Broker
from tests.conftest import faces
from tests.iai_helpers import client_for, control, foreign_faces, settled_state, stats


def added_by(emulator: Any, person: str, before: list[str]) -> list[str]:
    return [f for f in settled_state(emulator)["persons"][person]["faces"] if f not in before]


def one_result(listener: Any, base: str, command_id: str, timeout: float = 60) -> dict[str, Any]:
    result = result_for(listener, base, command_id, timeout)
    assert [r for r in fence(listener, base, f"{command_id}-fence") if r.get("id") == command_id] == []  # 4. and no second one
    assert result["faces_added"] == len(result["face_ids"])  # 2.
    return result


@pytest.mark.parametrize("answer", ["late", "never"])
def test_killed_while_the_cloud_applies_late_the_restarted_device_waits_and_finds_it(
    broker: Broker, make_agent: Any, emulator: Any, person: str, answer: str,
) -> None:
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base, client_id=f"late-{answer}", persistent=True)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_after_next={"ms": 4000, "answer": answer, "count": 1, "action": "CreateFace"})
        listener.publish(f"{agent.base}/enroll", command("late-1", person))
        wait_until(lambda: stats(emulator).get("requests.CreateFace", 0) == 1, what="CreateFace sent")
        agent.kill()
        agent.start(broker)  # back before the cloud has applied it: it must not conclude "nothing was enrolled"
        result = one_result(listener, agent.base, "late-1")
        new = added_by(emulator, "1001", before)
        assert len(new) == 1  # 1.
        assert (result["status"], result["reconciled"], result["face_ids"]) == ("succeeded", True, new)  # 2.
        assert stats(emulator)["requests.CreateFace"] == 1
    finally:
        listener.close()


def test_killed_during_create_person_the_person_is_settled_and_the_rest_added_once(
    broker: Broker, make_agent: Any, emulator: Any,
) -> None:
    client_for(emulator).create_group("staff", "Staff")
    agent = make_agent(broker, process=True)
    listener = listen(broker, agent.base, client_id="kill-person", persistent=True)
    try:
        control(emulator, reset_stats=True, apply_after_next={"ms": 3000, "answer": "never", "count": 1, "action": "CreatePerson"})
        listener.publish(f"{agent.base}/enroll", command("kp-1", "2002", faces=2, create_person={"group_id": "staff", "person_name": "Ada"}))
        wait_until(lambda: stats(emulator).get("requests.CreatePerson", 0) == 1, what="CreatePerson sent")
        agent.kill()
        agent.start(broker)
        result = one_result(listener, agent.base, "kp-1")
        created = settled_state(emulator)["persons"]["2002"]["faces"]
        assert len(created) == 2 and result["status"] == "succeeded" and sorted(result["face_ids"]) == sorted(created)
        assert result["person_created"] and result["reconciled"]
        assert stats(emulator)["requests.CreatePerson"] == 1 and stats(emulator)["requests.CreateFace"] == 1
    finally:
        listener.close()


@pytest.mark.parametrize("code", ["InternalError", "FailedOperation.RequestTimeout", "FailedOperation.InnerError"])  # the last: a code no list names
def test_applied_then_an_error_answer_is_one_face_and_succeeded(broker: Broker, make_agent: Any, emulator: Any, person: str,
                                                                code: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_then_error_next={"code": code, "count": 1, "action": "CreateFace"})
        listener.publish(f"{agent.base}/enroll", command("ate-1", person))
        result = one_result(listener, agent.base, "ate-1")
        new = added_by(emulator, "1001", before)
        assert len(new) == 1 and (result["status"], result["face_ids"], result["reconciled"]) == ("succeeded", new, True)
        assert stats(emulator)["requests.CreateFace"] == 1
    finally:
        listener.close()


def test_a_face_added_meanwhile_by_the_console_is_not_claimed(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, other_writer_next={"person": "1001", "when": "after", "count": 1}, apply_then_drop_next=1)
        listener.publish(f"{agent.base}/enroll", command("ow-1", person))
        result = one_result(listener, agent.base, "ow-1")
        new = added_by(emulator, "1001", before)
        stranger = foreign_faces(emulator)
        assert len(new) == 2 and len(stranger) == 1
        assert result["status"] == "succeeded" and result["face_ids"] == [f for f in new if f not in stranger]
    finally:
        listener.close()


def test_when_attribution_is_impossible_the_result_is_unknown_with_the_candidates(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_then_drop_next=1,
                fail_next={"code": "AuthFailure.UnauthorizedOperation", "count": 100, "action": "SearchFaces"})
        listener.publish(f"{agent.base}/enroll", command("unk-1", person))
        result = one_result(listener, agent.base, "unk-1")
        new = added_by(emulator, "1001", before)
        assert (result["status"], result["error"]["code"], result["face_ids"]) == ("unknown", "outcome_unknown", [])  # 3.
        assert result["candidate_face_ids"] == new and "check person 1001" in result["error"]["message"]
        assert stats(emulator)["requests.CreateFace"] == 1
    finally:
        control(emulator, reset_faults=True)
        listener.close()


def test_two_devices_enrolling_one_person_at_once(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    patient = {"max_attempts": 8, "backoff_base_s": 0.3, "backoff_max_s": 2}  # the other device's change takes ~1.5 s to apply: wait it out
    door, kiosk = make_agent(broker, device_id="door", cloud=patient), make_agent(broker, device_id="kiosk", cloud=patient)
    listener = listen(broker, "faceagent/+")
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_after_next={"ms": 1500, "answer": "late", "count": 2, "action": "CreateFace"})
        listener.publish(f"{door.base}/enroll", command("two-door", person))
        listener.publish(f"{kiosk.base}/enroll", command("two-kiosk", person))
        results = {device.device_id: one_result(listener, device.base, f"two-{device.device_id}") for device in (door, kiosk)}
        new = added_by(emulator, "1001", before)
        assert len(new) == 2, results
        assert all(r["status"] == "succeeded" and len(r["face_ids"]) == 1 for r in results.values())
        assert sorted(results["door"]["face_ids"] + results["kiosk"]["face_ids"]) == sorted(new)
        assert any(k.startswith("error.CreateFace.FailedOperation.ConflictOperation") for k in stats(emulator))  # they did collide
    finally:
        listener.close()


def test_a_lost_answer_the_cloud_cannot_be_asked_about_waits_with_backoff_then_settles(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, delay_next={"ms": 1500, "count": 1, "action": "CreateFace"}, apply_then_drop_next=1)
        listener.publish(f"{agent.base}/enroll", command("wait-1", person))
        wait_until(lambda: stats(emulator).get("ok.CreateFace", 0) == 1, what="CreateFace applied (its answer held, then dropped)")
        control(emulator, fail_next={"code": "InternalError", "count": 10_000, "action": "GetPersonBaseInfo"})  # reads fail from now
        note = listener.get_json(f"{agent.base}/enroll/progress", where=lambda p: p["id"] == "wait-1" and "lost" in p["detail"])
        assert note["state"] == "uploading"
        wait_until(lambda: "next try in" in agent.log() or "trying again later" in agent.log(), what="the settlement deferred")
        control(emulator, reset_faults=True)  # the cloud can be read again: the worker's next try settles it
        result = one_result(listener, agent.base, "wait-1", timeout=60)
        assert result["status"] == "succeeded" and result["reconciled"] and result["face_ids"] == added_by(emulator, "1001", before)
        assert stats(emulator)["requests.CreateFace"] == 1
    finally:
        listener.close()
