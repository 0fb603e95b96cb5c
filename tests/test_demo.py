"""`make demo` end to end: private broker, emulator, agent, one enrollment through `faceagent ctl enroll`."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_demo_enrolls_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent.devtools.demo"], capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: enrollment succeeded" in proc.stdout
    assert "succeeded: person 1001" in proc.stdout
    assert "person 1001 now holds 1 face(s)" in proc.stdout
    assert "operator  faceagent ctl enroll --broker mqtt://127.0.0.1:" in proc.stdout  # the command as it ran, ready to copy
