"""The CLI surface: help works everywhere and pulls in no heavy library."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.cli.commands import COMMANDS

HEAVY = ("onnxruntime", "cv2", "picamera2", "paho", "numpy", "requests")


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["detect", "--help"], ["ctl", "enroll", "--help"], ["ctl", "delete", "--help"],
                                  ["ctl", "snapshot", "--help"], ["doctor", "--help"], ["ha", "remove", "--help"]])
def test_help_does_not_import_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['faceagent', *{argv!r}]\n"
        "try:\n    runpy.run_module('agent', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_console_script_and_module_agree() -> None:
    a = subprocess.run([str(Path(sys.executable).parent / "faceagent"), "--help"], capture_output=True, text=True, timeout=60, check=True)
    b = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "check-config" in a.stdout and "ctl" in a.stdout
    assert a.stdout.replace("faceagent", "") == b.stdout.replace("faceagent", "")


@pytest.mark.parametrize("port", ["99999", "-5", "http"])
def test_the_emulator_refuses_a_port_that_cannot_be_one(port: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "emulator", "--port", port], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "argument --port" in proc.stderr and "Traceback" not in proc.stderr


def _command_paths(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every runnable command of the parser: "detect", or "ctl enroll" for a verb."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [prefix]
    return [path for name, sub in subparsers[0].choices.items() for path in _command_paths(sub, f"{prefix} {name}".strip())]


def test_every_command_runs_a_registered_function() -> None:
    """The parser and the registry agree: no command without a function, no function without a command."""
    assert sorted(_command_paths(build_parser())) == sorted(COMMANDS)
    assert all(callable(handler) and handler.__module__ == "agent.cli.commands" for handler in COMMANDS.values())
