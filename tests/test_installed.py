"""faceagent installed as a package (not editable, run outside the checkout): the demo and bench find what they need."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, building_this_checkout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv holding a regular (wheel) install of this checkout, as install.sh makes one; its dependencies are this test venv's."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    with building_this_checkout():
        proc = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps", str(REPO)],
                              capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = subprocess.run([str(venv / "bin/python"), "-c", "import agent; print(agent.__file__)"], capture_output=True, text=True,
                           timeout=60, cwd=root, check=True).stdout.strip()
    assert where.startswith(str(venv_site)), where  # the installed copy, not this checkout
    yield venv


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
                          env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin:/usr/sbin"})


def test_the_demo_runs_on_the_installed_package(installed: Path, tmp_path: Path) -> None:
    proc = run(installed, "python", "-m", "agent.devtools.demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: enrollment succeeded" in proc.stdout and "the files camera on grace_hopper.jpg" in proc.stdout


def test_bench_runs_on_the_installed_package_with_progress_a_table_and_json(installed: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"camera": {"type": "files", "path": "/x"}, "detector": {"input_width": 256, "input_height": 192,
                                                                                          "threads": 1},
                                  "quality": {"min_face_px": 80}}))  # what a 256x192 first pass sees in 1280x720 frames
    table = run(installed, "faceagent", "bench", "--no-daemon", "--repeat", "1", "--config", str(cfg), cwd=tmp_path)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "Traceback" not in table.stderr and "256x192 two-pass, 1 thread(s)" in table.stderr  # progress, on stderr
    lines = table.stdout.splitlines()
    assert lines[1].startswith("frames    3 photos from ") and "/site-packages/agent/devtools/demo_photos" in lines[1]
    assert any("input    kind      threads  calls  inference  pipeline  pipeline/inference" in line for line in lines)
    assert any(" 256x192  two-pass  1 " in line and line.endswith("(configured)") for line in lines)
    data = json.loads(run(installed, "faceagent", "bench", "--no-daemon", "--repeat", "1", "--json", cwd=tmp_path).stdout)
    assert data["frames"] == ["grace_hopper.jpg", "camera.png", "rocket.jpg"] and data["detector_recall"]["recall"] == 1.0
    assert all(row["inference_ms"] > 0 for row in data["detector"])


def test_the_first_make_says_what_pip_is_doing(tmp_path: Path) -> None:
    """`make demo` on a fresh clone: the minute pip works is announced, not silent (a dry run of the targets)."""
    proc = subprocess.run(["make", "-n", f"VENV={tmp_path / 'venv'}", "venv"], capture_output=True, text=True, timeout=60, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    pip = next(i for i, line in enumerate(lines) if "pip install --quiet" in line and " -e " in line)
    announced = [line for line in lines[:pip] if line.startswith("echo ")]
    assert any("creating" in line and "about a minute" in line for line in announced)
    assert any("installing faceagent" in line for line in announced)
