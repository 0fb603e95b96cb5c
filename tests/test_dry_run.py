"""A cloud-aware dry run: everything is captured and checked, the person and its group are read, nothing is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agent_proc import command, listen, result_for
from tests.broker import Broker
from tests.conftest import DATA, faces
from tests.iai_helpers import state, stats
from tests.test_service import run_enroll

WRITES = ("CreateFace", "CreatePerson", "DeleteFace", "CreateGroup")


def writes(emulator: Any) -> dict[str, int]:
    return {key: n for key, n in stats(emulator).items() if key.startswith("requests.") and key.split(".")[1] in WRITES}


def test_an_mqtt_dry_run_reads_the_person_and_writes_nothing(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    before = writes(emulator)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("dry-1", person, faces=2, dry_run=True, preview=True))
        result = result_for(listener, agent.base, "dry-1")
        assert (result["status"], result["dry_run"], result["would_send"], result["faces_added"]) == ("dry_run", True, 2, 0)
        assert "error" not in result and len(result["captures"]) == 2 and len(result["preview_jpeg_b64"]) == 2
        at_cloud = result["person_at_cloud"]
        assert at_cloud == {"exists": True, "person_name": "Person 1001", "face_ids": faces(emulator, person), "free_slots": 4,
                            "groups": ["staff"]}
        # a new person: its group is read, the person is not created
        listener.publish(f"{agent.base}/enroll", command("dry-2", "3003", dry_run=True, create_person={"group_id": "staff",
                                                                                                      "person_name": "New"}))
        new = result_for(listener, agent.base, "dry-2")
        assert new["status"] == "dry_run" and "error" not in new
        assert new["person_at_cloud"] == {"exists": False, "would_create_in_group": "staff", "group_persons": 1, "free_slots": 5}
        listener.publish(f"{agent.base}/enroll", command("dry-3", "3003", dry_run=True, create_person={"group_id": "nogroup",
                                                                                                      "person_name": "New"}))
        missing = result_for(listener, agent.base, "dry-3")
        assert missing["status"] == "dry_run" and "group nogroup does not exist" in missing["error"]["message"]
        listener.publish(f"{agent.base}/enroll", command("dry-4", "4004", dry_run=True))
        nobody = result_for(listener, agent.base, "dry-4")
        assert (nobody["status"], nobody["error"]["code"]) == ("dry_run", "person_not_found")
    finally:
        listener.close()
    assert writes(emulator) == before and len(faces(emulator, person)) == 1 and "3003" not in state(emulator)["persons"]


def test_enroll_dry_run_short_of_captures_says_what_a_real_run_would_do(tmp_path: Path, emulator: Any, person: str) -> None:
    images = ["--image", str(DATA / "grace_hopper.jpg"), "--image", str(DATA / "astronaut.png"), "--image", str(DATA / "coffee.png")]
    proc = run_enroll(tmp_path, emulator, "--person-id", person, "--faces", "3", *images, "--dry-run", "--out-dir", str(tmp_path / "c"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"dry run: person {person} — 2 image(s) would be sent; nothing was written"
    assert "succeeded" not in proc.stdout and "face(s) added" not in proc.stdout
    assert "a real run would meet low_quality: only 2 of 3 distinct usable captures" in proc.stdout
    assert "at the cloud: Person 1001, 1 face(s), 4 free slot(s), in staff" in proc.stdout
    assert len(list((tmp_path / "c").glob("crop-1001-*.jpg"))) == 2
    ok = run_enroll(tmp_path, emulator, "--person-id", person, "--dry-run", "--out-dir", str(tmp_path / "c2"), "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert (result["status"], result["would_send"], result["dry_run"]) == ("dry_run", 1, True) and "error" not in result
    assert len(faces(emulator, person)) == 1


def test_ctl_dry_run_exits_0_when_nothing_stands_in_the_way(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    agent = make_agent(broker)
    proc = subprocess.run([sys.executable, "-m", "agent", "ctl", "enroll", "--broker", broker.url, "--device", agent.device_id,
                           "--person-id", person, "--dry-run"], capture_output=True, text=True, timeout=90, check=False,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"dry run: person {person} — 1 image(s) would be sent; nothing was written\n")
    assert "[capturing]" in proc.stderr and "[uploading]" not in proc.stderr and len(faces(emulator, person)) == 1
