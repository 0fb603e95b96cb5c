"""Undo a wrong enrollment: the delete command and `faceagent ctl delete`, end to end (daemon, broker, emulator)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from agent.iai.models import CreateFaceRequest, CreatePersonRequest
from tests.agent_proc import COMMAND_KEY, command, listen, result_for, signed
from tests.broker import Broker
from tests.conftest import DATA, FACE_JPEG, faces
from tests.iai_helpers import client_for, control, stats
from tests.mqtt_helpers import Listener

SIGNED = {"env": {"FACEAGENT_COMMAND_KEY": COMMAND_KEY}, "commands": {"require_signature": True}}


def ctl(broker: Broker, verb: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "ctl", verb, "--broker", broker.url, *args], capture_output=True, text=True,
                          timeout=90, check=False, env={"PATH": "/usr/bin:/bin", **(env or {})})


def delete_result(listener: Listener, base: str, command_id: str) -> dict[str, Any]:
    return listener.get_json(f"{base}/delete/result", 30, where=lambda r: r.get("id") == command_id)


def test_ctl_delete_by_enrollment_removes_exactly_the_faces_it_added(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    original = faces(emulator, person)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("wrong-1", person, faces=2))
        added = result_for(listener, agent.base, "wrong-1")["face_ids"]
        assert len(added) == 2 and len(faces(emulator, person)) == 3
    finally:
        listener.close()
    undo = ctl(broker, "delete", "--device", agent.device_id, "--person-id", person, "--enrollment", "wrong-1", "--id", "undo-1")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert undo.stdout.splitlines()[0] == f"succeeded: person {person} — 2 face(s) deleted"
    assert f"deleted: {', '.join(added)}" in undo.stdout
    assert faces(emulator, person) == original  # the person's own face stays
    again = ctl(broker, "delete", "--device", agent.device_id, "--person-id", person, "--enrollment", "wrong-1", "--id", "undo-1",
                "--json")
    replay = json.loads(again.stdout)
    assert again.returncode == 0 and replay["replayed"] is True and replay["deleted_face_ids"] == added
    assert stats(emulator).get("ok.DeleteFace") == 1  # the replay deleted nothing


def test_delete_by_face_ids_names_the_faces_that_were_already_gone(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("e-1", person))
        new = result_for(listener, agent.base, "e-1")["face_ids"][0]
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "d-1", "person_id": person, "face_ids": [new, "4242"]}))
        result = delete_result(listener, agent.base, "d-1")
        assert (result["status"], result["deleted_face_ids"], result["not_found_face_ids"]) == ("succeeded", [new], ["4242"])
        assert new not in faces(emulator, person) and result["cloud_request_id"]
        assert result["faces_added"] == 0 and "error" not in result
    finally:
        listener.close()


@pytest.mark.parametrize("fault", [
    {"apply_then_error_next": {"code": "InternalError", "action": "DeleteFace"}},  # deleted; the retry's answer: "0 deleted"
    {"apply_then_drop_next": {"action": "DeleteFace"}},  # deleted; the answer lost, the retry finds nothing to delete
    {"apply_after_next": {"ms": 3000, "answer": "never", "action": "DeleteFace"}},  # deleted late; retries meet a conflict
], ids=["applied-then-error", "applied-then-dropped", "applied-late-never-answered"])
def test_a_delete_whose_answer_is_lost_or_wrong_reports_what_the_person_shows(
    broker: Broker, make_agent: Any, emulator: Any, person: str, fault: dict[str, Any],
) -> None:
    agent = make_agent(broker, cloud={"read_timeout_s": 2, "settle_s": 5})
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("e-lost", person, faces=2))
        added = result_for(listener, agent.base, "e-lost")["face_ids"]
        control(emulator, **fault)
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "d-lost", "person_id": person, "enrollment_id": "e-lost"}))
        result = delete_result(listener, agent.base, "d-lost")
        assert (result["status"], sorted(result["deleted_face_ids"])) == ("succeeded", sorted(added)), result.get("error")
        assert not set(added) & set(faces(emulator, person))
    finally:
        listener.close()


def test_a_persons_last_face_is_never_deleted(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    only = faces(emulator, person)
    undo = ctl(broker, "delete", "--device", agent.device_id, "--person-id", person, "--face-id", only[0], "--json")
    result = json.loads(undo.stdout)
    assert undo.returncode == 1 and result["status"] == "failed" and result["error"]["code"] == "last_face"
    assert "enroll a face of the right person first" in result["error"]["message"] and result["error"]["retryable"] is False
    assert faces(emulator, person) == only and "ok.DeleteFace" not in stats(emulator)


def test_a_delete_is_refused_for_an_unknown_enrollment_or_another_persons(broker: Broker, make_agent: Any, emulator: Any,
                                                                          person: str) -> None:
    client_for(emulator).create_person(CreatePersonRequest("staff", "Other", "2002", image=(DATA / "astronaut.png").read_bytes()))
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("e-2002", "2002"))
        assert result_for(listener, agent.base, "e-2002")["status"] == "succeeded"
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "d-x", "person_id": person, "enrollment_id": "e-2002"}))
        other = delete_result(listener, agent.base, "d-x")
        assert other["status"] == "failed" and "enrollment e-2002 was for person 2002, not 1001" in other["error"]["message"]
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "d-y", "person_id": person, "enrollment_id": "never-sent"}))
        unknown = delete_result(listener, agent.base, "d-y")
        assert unknown["error"]["code"] == "invalid_command" and "no enrollment never-sent is stored" in unknown["error"]["message"]
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "d-z", "person_id": person}))
        assert "give exactly one of enrollment_id and face_ids" in delete_result(listener, agent.base, "d-z")["error"]["message"]
        # one id store for every kind of command: an enroll id cannot name a delete
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "e-2002", "person_id": "2002", "enrollment_id": "e-2002"}))
        reused = delete_result(listener, agent.base, "e-2002")
        assert reused["status"] == "rejected" and "already used by an enroll command" in reused["error"]["message"]
        assert len(faces(emulator, "2002")) == 2 and "ok.DeleteFace" not in stats(emulator)
    finally:
        listener.close()


def test_deletes_need_a_signature_when_commands_do(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker, **SIGNED)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", signed("s-1", person))
        added = result_for(listener, agent.base, "s-1")["face_ids"]
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "undo-s", "person_id": person, "enrollment_id": "s-1"}))
        refused = listener.get_json(f"{agent.base}/delete/result", 30)
        assert refused["status"] == "rejected" and refused["id"] is None  # a stranger's message claims no id
        assert "signed commands are required" in refused["error"]["message"] and "'undo-s' not taken" in refused["error"]["message"]
        assert added[0] in faces(emulator, person)
    finally:
        listener.close()
    # the operator's ctl signs with the key; the refused id was not claimed by the unsigned attempt
    undo = ctl(broker, "delete", "--device", agent.device_id, "--person-id", person, "--enrollment", "s-1", "--id", "undo-s",
               env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY})
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert added[0] not in faces(emulator, person)


def test_a_full_person_is_answered_with_how_to_delete_a_face(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    client = client_for(emulator)
    client.create_face(CreateFaceRequest(person, [FACE_JPEG] * 4))
    assert len(faces(emulator, person)) == 5
    agent = make_agent(broker)
    full = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", broker.url, "--device", agent.device_id,
                           "--person-id", person], capture_output=True, text=True, timeout=90, check=False, env={"PATH": "/usr/bin:/bin"})
    assert full.returncode == 1 and "person_face_limit" in full.stdout
    hint = re.search(r"delete one first \(faceagent ctl delete (.*?) --face-id FACE_ID,", full.stdout)
    assert hint and hint[1] == f"--device {agent.device_id} --person-id {person}", full.stdout
    pasted = subprocess.run([sys.executable, "-m", "agent", "ctl", "delete", "--broker", broker.url, *hint[1].split(),
                             "--face-id", faces(emulator, person)[-1]], capture_output=True, text=True, timeout=90, check=False,
                            env={"PATH": "/usr/bin:/bin"})
    assert pasted.returncode == 0, pasted.stderr  # the hint, pasted with a face id, runs
    assert len(faces(emulator, person)) == 4


@pytest.mark.parametrize("args", [["--face-id", "x y"], ["--enrollment", "a b"], [arg for i in range(6) for arg in ("--face-id", str(i))]],
                         ids=["face-id", "enrollment", "six-faces"])
def test_ctl_delete_refuses_what_the_device_would_refuse_before_sending(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "ctl", "delete", "--broker", "mqtt://127.0.0.1:1", "--device", "d",
                           "--person-id", "1001", *args], capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and ("argument --" in proc.stderr or "at most 5 faces" in proc.stderr), proc.stderr
    assert "sent " not in proc.stderr and "Traceback" not in proc.stderr
