"""The runtime lock (packaging/requirements.lock) against setup.cfg: the lock is the one source of the versions a
device installs (the .deb, the README's pip path, CI's venvs), so it must satisfy every runtime requirement and be
made from the current ones. `make lock` (tools/lock.py) rewrites it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO


def lock_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faceagent_lock_tool", REPO / "tools" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_satisfies_setup_cfg_and_was_made_from_it() -> None:
    assert lock_tool().disagreements() == []
    proc = subprocess.run([sys.executable, "tools/lock.py", "check"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_runtime_dependency_is_locked_with_hashes_and_numpy_comes_from_apt() -> None:
    tool = lock_tool()
    _, pins = tool.read_lock()
    assert {"onnxruntime", "paho-mqtt", "pydantic", "pydantic-core", "requests", "pyyaml"} <= set(pins)
    assert "numpy" not in pins  # apt's python3-numpy, which apt's OpenCV and picamera2 are built on
    assert not {"pytest", "mypy", "ruff", "hypothesis", "onnx"} & set(pins)  # test tools are not installed on a device
    # Compiled packages have one wheel per architecture (amd64, arm64), each with its hash.
    for compiled in ("onnxruntime", "pydantic-core", "pyyaml"):
        assert len(pins[compiled][1]) == 2, (compiled, pins[compiled])
    assert pins["onnxruntime"][0] != "1.21.0"  # its aarch64 wheel dies with SIGILL on a Pi 3/4


def test_a_setup_cfg_change_without_make_lock_is_caught(tmp_path: Path) -> None:
    setup_cfg = (REPO / "setup.cfg").read_text()
    raised = re.sub(r"paho-mqtt>=[\d.]+", "paho-mqtt>=9.0", setup_cfg)
    added = setup_cfg.replace("    pydantic>=2.5\n", "    pydantic>=2.5\n    cryptography>=42\n")
    assert setup_cfg not in (raised, added)
    tool = lock_tool()
    for text, expected in ((raised, "paho-mqtt>=9.0: the lock pins paho-mqtt=="), (added, "cryptography>=42: not in the lock")):
        (tmp_path / "setup.cfg").write_text(text)
        problems = tool.disagreements(tmp_path / "setup.cfg")
        assert any(p.startswith(expected) for p in problems), problems
        assert any(p.startswith("the lock was made from install_requires") for p in problems), problems
    unhashed = re.sub(r" \\\n    --hash=sha256:[0-9a-f]{64}", "", (REPO / "packaging" / "requirements.lock").read_text())
    (tmp_path / "requirements.lock").write_text(unhashed)
    problems = tool.disagreements(lock=tmp_path / "requirements.lock")
    assert len([p for p in problems if p.endswith(": no --hash")]) == len(tool.read_lock()[1]) > 0, problems
