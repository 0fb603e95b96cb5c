"""The daemon's parts in this process: `App` built and started as `faceagent run` builds it, on a real broker.

`InProcessAgent` has the interface of `AgentProcess` (tests/agent_proc.py) — `start`, `stop`, `log`, `alive`,
`config`, `base` — so a test says which one it needs by one argument of `make_agent`. In-process is the default:
no interpreter start, no model load per test beyond the App's own, and a fault inside a thread shows in the test.
The App's clocks can be injected (`agent.clock`): a test steps the device's wall clock in this process, where a
process needs a shim. What only a process can prove stays a subprocess (`make_agent(..., process=True)`): signals,
kill -9, systemd's notify socket, the CLI's exit codes, start-up failures.

Several in-process agents can run in one test (each has its own client id, state folder and threads), but they
share this process's loggers: a test that reads one device's log beside another's uses processes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from agent.clock import SYSTEM_CLOCK
from agent.config import Config, config_from_mapping
from agent.logs import RedactingFormatter
from tests.agent_proc import AgentProcess
from tests.broker import Broker


class _Capture(logging.Handler):
    """Every record of the agent's loggers, formatted and redacted as the daemon's own handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


_LOGGERS = ("agent", "faceagent")


class InProcessAgent(AgentProcess):
    """One device's App in this process: the same config as the subprocess agent, the same secrets, no process."""

    def __init__(self, workdir: Path, broker: Broker, emulator: Any, device_id: str = "cam-test",
                 overrides: dict[str, Any] | None = None) -> None:
        super().__init__(workdir, broker, emulator, device_id, overrides)
        self.app: Any = None
        self._runner: threading.Thread | None = None
        self._capture = _Capture()
        self.exit_code: int | None = None
        self.clock = SYSTEM_CLOCK  # a test may give the App another (a device clock NTP steps, say) before `start`

    def load(self) -> Config:
        """The config as `faceagent run --config` would read it, with this agent's secrets."""
        self.write_config()
        return config_from_mapping(yaml.safe_load(self.config_path.read_text()), self.env)

    def start(self, broker: Broker | None = None, wait_online: bool = True) -> None:
        from agent.app import App

        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self._capture)
            logger.setLevel(logging.DEBUG)
        umask = os.umask(0o022)
        try:
            self.app = App(self.load(), secrets_from=self.env, clock=self.clock)
            self.app.start()
        finally:
            os.umask(umask)  # App.start() sets the daemon's 0077; the test process keeps its own
        self.exit_code = None
        self._runner = threading.Thread(target=self._run, name=f"test-run-{self.device_id}", daemon=True)
        self._runner.start()
        if wait_online and broker is not None:
            self.wait_online(broker)

    def _run(self) -> None:
        self.exit_code = int(self.app.run())

    def stop(self, timeout: float = 30) -> int:
        """As SIGTERM does: `run()` returns after the App stopped; its exit status."""
        assert self.app is not None and self._runner is not None
        self.app.stop_requested.set()
        self._runner.join(timeout)
        assert not self._runner.is_alive(), "the App did not stop"
        self._detach()
        assert self.exit_code is not None
        return self.exit_code

    def kill(self) -> None:
        raise NotImplementedError("kill -9 needs a process: make_agent(..., process=True)")

    def close(self) -> None:
        if self._runner is not None and self._runner.is_alive():
            self.stop()
        self._detach()

    def _detach(self) -> None:
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(self._capture)

    def log(self) -> str:
        return "\n".join(self._capture.lines)

    @property
    def alive(self) -> bool:
        return self._runner is not None and self._runner.is_alive()

    @property
    def proc(self) -> Any:  # type: ignore[override]
        """The subprocess agent's `proc`, for code that checks it is running."""
        return _Running(self)

    @proc.setter
    def proc(self, value: Any) -> None:
        pass


class _Running:
    def __init__(self, agent: InProcessAgent) -> None:
        self._agent = agent

    def poll(self) -> int | None:
        return None if self._agent.alive else (self._agent.exit_code if self._agent.exit_code is not None else 0)
