"""A Pi has no real-time clock: it boots with a stale time and NTP steps it later. Every window the exactly-once
bookkeeping measures (how long a lost CreateFace may still land) runs on a clock that does not jump.

The daemon runs as a process with a clock shim (tests/clockshim: `time.time()` offset by a file the test rewrites;
`time.monotonic()` untouched); the emulator keeps the real time, so the device learns its offset from a
SignatureExpire answer, as it would from the real service.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.clock import Clock
from agent.iai.errors import OutcomeUnknown
from agent.iai.models import CreateFaceRequest
from agent.iai.reconcile import Attempt, Reconciler
from tests.agent_proc import command, listen, wait_until
from tests.broker import Broker
from tests.conftest import faces
from tests.iai_helpers import client_for, control, stats
from tests.test_exactly_once import added_by, one_result
from tests.test_upload import CROP, WINDOW_S

SHIM = Path(__file__).parent / "clockshim"


def clocked_agent(make_agent: Any, broker: Broker, tmp_path: Path, offset_s: float) -> tuple[Any, Path]:
    offset = tmp_path / "clock-offset"
    offset.write_text(str(offset_s))
    agent = make_agent(broker, start=False, process=True, env={"FACEAGENT_TEST_CLOCK_OFFSET_FILE": str(offset)})
    agent.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM), agent.env.get("PYTHONPATH", "")) if p)
    agent.start(broker)
    return agent, offset


def found_once(listener: Any, agent: Any, emulator: Any, before: list[str], command_id: str) -> None:
    """The late face is found and claimed by the one result of `command_id`, after exactly one CreateFace."""
    result = one_result(listener, agent.base, command_id)
    new = added_by(emulator, "1001", before)
    assert len(new) == 1
    assert (result["status"], result["reconciled"], result["face_ids"]) == ("succeeded", True, new), result
    assert stats(emulator)["requests.CreateFace"] == 1


@pytest.mark.parametrize(("case", "offset_s", "late_ms"), [
    ("an hour behind, stepped forward by NTP while the answer is awaited", -3600, 7000),
    ("1000 s ahead, killed while the CreateFace is in flight and restarted", 1000, 4000),
])
def test_a_wrong_device_clock_does_not_end_the_window_of_a_create_face_that_lands_late(
    broker: Broker, make_agent: Any, emulator: Any, person: str, tmp_path: Path, case: str, offset_s: float, late_ms: int,
) -> None:
    agent, offset = clocked_agent(make_agent, broker, tmp_path, offset_s)
    listener = listen(broker, agent.base, client_id=f"clock{offset_s:+.0f}", persistent=True)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_after_next={"ms": late_ms, "answer": "never", "count": 1, "action": "CreateFace"})
        listener.publish(f"{agent.base}/enroll", command("clock-1", person))
        wait_until(lambda: stats(emulator).get("requests.CreateFace", 0) == 1, what="CreateFace sent")
        assert "clock is" in agent.log()  # the device runs on the wrong clock (it learnt the offset from SignatureExpire)
        if offset_s < 0:
            offset.write_text("0")  # NTP steps the clock forward by an hour
        else:
            agent.kill()
            agent.start(broker)  # the offset learnt from the cloud is gone; the clock is still 1000 s ahead
        found_once(listener, agent, emulator, before, "clock-1")
    finally:
        listener.close()


def test_in_process_the_device_clock_stepped_during_the_window_does_not_end_it(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    """The same NTP step on the App's injected clock (tests/harness.py): the window is measured on the monotonic clock."""
    offset = [-3600.0]
    agent = make_agent(broker, start=False)
    agent.clock = Clock(wall=lambda: time.time() + offset[0])
    agent.start(broker)
    listener = listen(broker, agent.base, client_id="clock-in-process", persistent=True)
    before = faces(emulator, "1001")
    try:
        control(emulator, reset_stats=True, apply_after_next={"ms": 7000, "answer": "never", "count": 1, "action": "CreateFace"})
        listener.publish(f"{agent.base}/enroll", command("clock-in-1", person))
        wait_until(lambda: stats(emulator).get("requests.CreateFace", 0) == 1, what="CreateFace sent")
        assert "clock is" in agent.log()  # signed on the wrong clock, corrected from the cloud's SignatureExpire
        offset[0] = 0.0  # NTP steps the device clock forward by an hour while the answer is awaited
        found_once(listener, agent, emulator, before, "clock-in-1")
    finally:
        listener.close()


def test_an_attempt_from_another_boot_is_given_the_whole_window_not_judged_by_the_wall_clock(emulator: Any, person: str) -> None:
    """After a reboot the monotonic time of sending means nothing: the settlement waits a whole window from its start."""
    client = client_for(emulator, read_timeout=0.5)
    known = tuple(faces(emulator, "1001"))
    control(emulator, apply_after_next={"ms": 2500, "answer": "never", "count": 1, "action": "CreateFace"})
    with pytest.raises(OutcomeUnknown):
        client.create_face(CreateFaceRequest("1001", [CROP]))
    attempt = Attempt("CreateFace", "1001", (CROP,), known, sent_at=time.time() - 3600, boot="the-boot-before", sent_mono=0.0)
    settled = Reconciler(client, window_s=WINDOW_S, poll_s=0.2, boot="this-boot").settle(attempt)
    new = [f for f in faces(emulator, "1001") if f not in known]
    assert len(new) == 1 and settled.ours == tuple(new) and settled.complete
