"""Every thread of the daemon is supervised: a thread that dies takes the device `offline` and the process down
(exit 1, for systemd to restart it) with its traceback through the redacting log; an answer that used to kill the
worker is now a cloud failure the worker waits out. systemd's watchdog is fed only while the threads run.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.logs import SECRETS, setup_logging
from tests.agent_proc import command, listen, result_for, wait_until
from tests.broker import Broker
from tests.hostile_proxy import HostileProxy
from tests.test_service import notify_socket  # noqa: F401 - the fixture

SECRET = "sk-thread-secret-0123456789abcdef"


def test_an_uncaught_exception_in_any_thread_goes_through_the_redacting_log() -> None:
    stream = io.StringIO()
    SECRETS.add(SECRET)
    setup_logging("INFO", "text", stream)
    try:
        def leak() -> None:
            raise RuntimeError(f"request failed: {{'SecretKey': '{SECRET}'}}")

        thread = threading.Thread(target=leak, name="leaky")
        thread.start()
        thread.join()
    finally:
        setup_logging("INFO", "text")
    out = stream.getvalue()
    assert "thread leaky stopped on an uncaught exception" in out and "RuntimeError" in out
    assert SECRET not in out


def test_a_dead_thread_takes_the_device_offline_and_the_process_exits_1(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        assert listener.get(f"{agent.base}/availability")[1] == b"online"
        telemetry = agent.app.service.telemetry

        def exhausted() -> dict[str, Any]:
            raise OSError(24, "Too many open files")

        telemetry.state = exhausted
        telemetry.wake()
        assert listener.get(f"{agent.base}/availability", timeout=30)[1] == b"offline"
        agent._runner.join(30)
        assert agent.exit_code == 1
        log = agent.log()
        assert "the telemetry thread stopped on an unexpected error" in log and "Too many open files" in log
    finally:
        listener.close()


def watchdog_pinged_after_now(sock: Any) -> bool:
    """Drop what the socket holds, then wait for the next WATCHDOG=1 (the socket's 30 s timeout fails the test)."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except BlockingIOError:
        pass
    sock.settimeout(30)
    while sock.recv(4096) != b"WATCHDOG=1":
        pass
    return True


@pytest.fixture
def proxy(emulator: Any) -> Iterator[HostileProxy]:
    with HostileProxy(emulator.base_url) as p:
        yield p


def test_a_malformed_search_answer_in_a_deferred_settlement_is_waited_out_and_the_watchdog_stays_fed(
    broker: Broker, make_agent: Any, emulator: Any, person: str, proxy: HostileProxy, notify_socket: tuple[str, Any],  # noqa: F811
) -> None:
    path, sock = notify_socket
    agent = make_agent(broker, start=False, process=True, cloud={"endpoint": proxy.base_url})
    agent.env.update({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    agent.start(broker)
    listener = listen(broker, agent.base)
    try:
        # applied, answer lost: settled by reading back; the first settlement cannot read the person: deferred
        proxy.arm("CreateFace", status=502, then=lambda: proxy.arm("GetPersonBaseInfo", status=502, count=3))
        proxy.arm("SearchFaces", rewrite=lambda r: {**r, "Results": [{"Candidates": [{"PersonId": person, "FaceId": "x", "Score": "high"}]}]})
        listener.publish(f"{agent.base}/enroll", command("kill-1", person))
        result = result_for(listener, agent.base, "kill-1", timeout=90)
        assert result["status"] == "succeeded" and result["reconciled"] is True, result
        assert b"unreadable answer" in Path(agent.log_path).read_bytes()
        assert watchdog_pinged_after_now(sock) and agent.alive
        listener.publish(f"{agent.base}/enroll", command("kill-2", person))
        assert result_for(listener, agent.base, "kill-2")["status"] == "succeeded"
    finally:
        listener.close()


class _Notifier:
    """systemd's side, in-process: the pings `App.run` sends, with what the test knew at each."""

    watchdog_s = 0.4

    def __init__(self) -> None:
        self.pings: queue.Queue[bool] = queue.Queue()
        self.while_stuck = lambda: False

    def watchdog(self) -> bool:
        self.pings.put(self.while_stuck())
        return True

    def status(self, text: str) -> bool:
        return True

    def ready(self, text: str) -> bool:
        return True

    def stopping(self, text: str = "") -> bool:
        return True


def test_the_watchdog_is_not_fed_while_a_thread_is_stuck(broker: Broker, make_agent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.app

    notifier = _Notifier()
    monkeypatch.setattr(agent.app, "Notifier", lambda: notifier)
    monkeypatch.setattr(agent.app, "STUCK_S", 0.5)  # plus cloud.deadline_s 1: stuck after 1.5 s out of its wait
    device = make_agent(broker, cloud={"read_timeout_s": 1, "deadline_s": 1})
    assert notifier.pings.get(timeout=10) is False  # fed while every thread runs
    telemetry, blocked, release = device.app.service.telemetry, threading.Event(), threading.Event()

    def hangs() -> dict[str, Any]:
        blocked.set()
        release.wait(60)
        blocked.clear()
        return {}

    notifier.while_stuck = lambda: blocked.is_set() and "busy for more than" in device.log()
    telemetry.state = hangs
    telemetry.wake()
    wait_until(lambda: "thread(s) telemetry busy for more than 1.5 s: the watchdog is no longer fed" in device.log(),
               what="the stuck telemetry thread reported")
    release.set()
    while not notifier.pings.empty():
        assert notifier.pings.get() is False  # no ping went out while the thread was known stuck
    assert notifier.pings.get(timeout=10) is False  # fed again once it came back to its wait
