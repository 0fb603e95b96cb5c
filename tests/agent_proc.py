"""Run the real daemon (`faceagent run`) as a subprocess against the private broker and the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agent.service.protocol import sign_command
from tests.broker import Broker
from tests.conftest import DATA, EMU_ID, EMU_KEY
from tests.mqtt_helpers import Listener


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class AgentProcess:
    """One device: its config file, state dir and process; `start`, `stop` (SIGTERM), `kill` (SIGKILL)."""

    def __init__(self, workdir: Path, broker: Broker, emulator: Any, device_id: str = "cam-test", overrides: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.device_id = device_id
        self.base = f"faceagent/{device_id}"
        self.config_path = workdir / f"{device_id}.yaml"
        self.log_path = workdir / f"{device_id}.log"
        config = {
            "device_id": device_id,
            "state_dir": str(workdir / f"state-{device_id}"),
            "mqtt": {"url": broker.url, "reconnect_min_s": 1, "reconnect_max_s": 2, "telemetry_interval_s": 2},
            "cloud": {"endpoint": emulator.base_url, "max_attempts": 3, "deadline_s": 8, "backoff_base_s": 0.05, "backoff_max_s": 0.2,
                      "rate_limit_per_s": 20, "rate_burst": 20, "read_timeout_s": 5},
            "camera": {"type": "files", "path": str(DATA / "grace_hopper.jpg")},
            # unique_person_control 0: the test camera shows one photo, so every second person created from it would be
            # refused as the first one's duplicate (tests/test_enroll_guards.py covers the device default).
            "enroll": {"capture_timeout_s": 5, "min_capture_gap_s": 0.05, "shutdown_grace_s": 5, "unique_person_control": 0},
        }
        self.config = deep_merge(config, overrides or {})
        self.env = {**os.environ, "TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY, "FACEAGENT_LOG_LEVEL": "DEBUG"}
        self.env.pop("FACEAGENT_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, broker: Broker | None = None, wait_online: bool = True) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        if wait_online and broker is not None:
            self.wait_online(broker)

    def wait_online(self, broker: Broker, timeout: float = 30) -> None:
        listener = Listener(broker.host, broker.port, [f"{self.base}/availability"])
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, f"agent exited: {self.log()}"
                try:
                    if listener.get(timeout=0.5)[1] == b"online":
                        return
                except TimeoutError:
                    continue
            raise TimeoutError(f"agent did not come online: {self.log()}")
        finally:
            listener.close()

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def command(command_id: str, person_id: str = "1001", **extra: Any) -> bytes:
    return json.dumps({"id": command_id, "person_id": person_id, **extra}).encode()


COMMAND_KEY = "operator-hmac-key-0123456789abcdef"


def signed(command_id: str | None, person_id: str | None = "1001", key: str = COMMAND_KEY, ts: int | None = None,
           device_id: str | None = "cam-test", **extra: Any) -> bytes:
    """A signed command (or snapshot request when `person_id` is None), as an operator tool makes it."""
    body: dict[str, Any] = {"ts": int(time.time()) if ts is None else ts, **extra}
    for name, value in (("id", command_id), ("person_id", person_id), ("device_id", device_id)):
        if value is not None:
            body[name] = value
    body["sig"] = sign_command(body, key.encode())
    return json.dumps(body).encode()


def listen(broker: Broker, base: str, **kw: Any) -> Listener:
    """A subscriber to everything a device publishes."""
    return Listener(broker.host, broker.port, [f"{base}/enroll/result", f"{base}/enroll/progress", f"{base}/availability",
                                               f"{base}/state", f"{base}/telemetry", f"{base}/snapshot/result",
                                               f"{base}/delete/result"], **kw)


def result_for(listener: Listener, base: str, command_id: str | None, timeout: float = 30) -> dict[str, Any]:
    return listener.get_json(f"{base}/enroll/result", timeout, where=lambda r: r.get("id") == command_id)


def fence(listener: Listener, base: str, fence_id: str) -> list[dict[str, Any]]:
    """Every enroll result that reached `listener` before the answer to a command sent now.

    The device answers commands in the order they arrive and publishes results in the order they were stored, and
    the broker keeps one publisher's order to one subscriber: a result that was going to come has come by the time
    the fence's answer does. A refused command (faces out of range) is the cheapest fence: the intake answers it.
    """
    listener.publish(f"{base}/enroll", command(fence_id, "fence", faces=99))
    before: list[dict[str, Any]] = []
    while True:
        result = listener.get_json(f"{base}/enroll/result", timeout=30)
        if result.get("id") == fence_id:
            return before
        before.append(result)


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "the condition") -> None:
    """Poll a fact (emulator state, a file) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
