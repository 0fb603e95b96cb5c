"""Shared fixtures: a private mosquitto per session (and per test for fault tests), state dirs, markers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
FACE_PHOTOS = ["astronaut.png", "grace_hopper.jpg", "camera.png"]
NO_FACE_PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FACEAGENT_HW") == "1":
        return
    skip_hw = pytest.mark.skip(reason="needs a Raspberry Pi camera (set FACEAGENT_HW=1 on a Pi)")
    for item in items:
        if "hw" in item.keywords:
            item.add_marker(skip_hw)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """A command run in-process points the root logger at pytest's captured stderr; the next test must not write to it after it is closed."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One private broker for the whole session. Do not stop it: use `own_broker` for outages."""
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A private broker for one test, which the test may stop and restart."""
    b = Broker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """An empty state directory, as systemd's StateDirectory= would give."""
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


@contextlib.contextmanager
def building_this_checkout() -> Iterator[None]:
    """Held while a test builds this checkout's wheel (pip install ., install.sh): setuptools builds in the checkout's
    own build/ folder, and two builds there at once (parallel test workers) break each other."""
    import fcntl
    import hashlib
    import tempfile

    name = f"faceagent-build-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}.lock"
    with open(Path(tempfile.gettempdir()) / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


EMU_ID = "AKIDtestemulatorid0000000000000000"
EMU_KEY = "test-emulator-secret-key-000000000"


@pytest.fixture
def emulator() -> Iterator[object]:
    """A fresh IAI emulator on a free loopback port, serving in a thread."""
    import threading

    from agent.devtools.emulator import make_server

    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_agent(tmp_path: Path, emulator: Any) -> Iterator[Callable[..., Any]]:
    """Start agents against a broker and the emulator; every one is stopped (or killed) at the end.

    In this process by default (tests/harness.py); `process=True` runs `faceagent run` as a subprocess, for what
    only a process can show: signals, kill -9, systemd's notify socket, exit codes, start-up failures.
    """
    from tests.agent_proc import AgentProcess
    from tests.harness import InProcessAgent

    agents: list[AgentProcess] = []

    def factory(broker: Broker, device_id: str = "cam-test", start: bool = True, env: dict[str, str] | None = None,
                wait: bool = True, process: bool = False, **overrides: Any) -> AgentProcess:
        kind = AgentProcess if process else InProcessAgent
        agent = kind(tmp_path, broker, emulator, device_id, overrides)
        agent.env.update(env or {})
        agents.append(agent)
        if start:
            agent.start(broker, wait_online=wait)
        return agent

    yield factory
    for agent in agents:
        agent.close()


FACE_JPEG = (DATA / "grace_hopper.jpg").read_bytes()


@pytest.fixture
def person(emulator: Any) -> str:
    """Person 1001 in group staff, with one face (grace_hopper.jpg)."""
    from tests.iai_helpers import client_for, seed_person

    seed_person(client_for(emulator), "1001", FACE_JPEG)
    return "1001"


def faces(emulator: Any, person_id: str) -> list[str]:
    from tests.iai_helpers import state

    return list(state(emulator)["persons"].get(person_id, {}).get("faces", []))
