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
    assert "person 1001 holds 1 face(s)" in proc.stdout
