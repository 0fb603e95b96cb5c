"""The shape of the code: imports only go downward, the operator tool stays light, the docs it cites exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

AGENT = REPO / "agent"
# Lower layers never import upper ones; the cloud client and the cameras (layer 1) know nothing of each other.
LAYERS = {
    "agent": 0, "agent.errors": 0, "agent.config": 0, "agent.logs": 0, "agent.retry": 0, "agent.images": 0, "agent.models": 0,
    "agent.config_reference": 0,
    "agent.iai": 1, "agent.camera": 1,
    "agent.vision": 2,
    "agent.service": 3,
    "agent.app": 4,
    "agent.cli": 5, "agent.devtools": 5, "agent.__main__": 5,
}
ISOLATED_LAYERS = {1}
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit a module belongs to: the longest prefix listed in LAYERS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in LAYERS:
            return candidate
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every `agent...` module imported anywhere in the file (functions included), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "agent"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "agent" and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(AGENT.rglob("*.py"))


def test_imports_only_go_downward() -> None:
    wrong = []
    for path in SOURCES:
        here = unit(module_name(path))
        for line, target in imports_of(path):
            there = unit(target)
            if there in (here, "agent"):
                continue
            if LAYERS[there] > LAYERS[here] or (LAYERS[there] == LAYERS[here] and LAYERS[here] in ISOLATED_LAYERS):
                wrong.append(f"{path.relative_to(REPO)}:{line} ({here}, layer {LAYERS[here]}) imports {target} ({there}, layer {LAYERS[there]})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agent.service.daemon import EnrollService\n")
    assert imports_of(bad) == [(2, "agent.service.daemon")]
    assert LAYERS[unit("agent.service.daemon")] > LAYERS[unit("agent.camera.files")]


def test_no_module_is_longer_than_an_afternoon_allows() -> None:
    long = {str(p.relative_to(REPO)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


@pytest.mark.parametrize("verb", [["enroll", "--person-id", "1001"], ["delete", "--person-id", "1001", "--face-id", "42"]])
def test_ctl_runs_without_numpy_opencv_onnxruntime(broker: object, verb: list[str]) -> None:
    """An operator's laptop with only paho, pydantic and PyYAML: `faceagent ctl` must still work."""
    blocker = (
        "import sys\n"
        "for name in ('numpy', 'cv2', 'onnxruntime', 'picamera2', 'requests'):\n"
        "    sys.modules[name] = None  # import raises ImportError, as where they are not installed\n"
        "from agent.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    url = broker.url  # type: ignore[attr-defined]
    proc = subprocess.run([sys.executable, "-c", blocker, "ctl", verb[0], "--broker", url, "--device", "nobody-home", *verb[1:],
                           "--timeout", "1", "--queue"],
                          capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert proc.returncode == 3, proc.stderr  # it connected, subscribed, published and waited: no heavy import on the way
    assert "sent " in proc.stderr and "no result" in proc.stderr


DOC_REFERENCE = re.compile(r"\bdocs/[\w.-]+\.md\b")


@pytest.mark.parametrize("path", [*SOURCES, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: str(p.relative_to(REPO)))
def test_documents_the_code_cites_are_in_the_repository(path: Path) -> None:
    text = path.read_text()
    for reference in set(DOC_REFERENCE.findall(text)):
        assert (REPO / reference).is_file(), f"{path.relative_to(REPO)} cites {reference}, which does not exist"
    assert "iai-api.md" not in text and "contract §" not in text, f"{path.relative_to(REPO)} cites a document outside the repository"


def test_the_readme_layout_names_real_folders_and_files() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("Layout"):]
    block = block[block.index("```") + 3 :]
    block = block[: block.index("```")]
    checked, missing = 0, []
    folder = AGENT
    for line in block.splitlines():
        names = re.findall(r"(?<![\w/.-])([a-z_][\w]*(?:\.py|/))", line.split("  ")[0] if line.startswith("agent/") else line)
        if not names:
            continue
        if line[:2] == "  " and line[2] != " " and names[0].endswith("/"):  # a package line: names after it live in it
            folder = AGENT / names[0]
            names = names[1:]
        elif not line.startswith(" "):
            folder = REPO
        for name in names:
            checked += 1
            if not ((folder / name).exists() or (AGENT / name).exists() or (REPO / name).exists()):
                missing.append(f"{folder.relative_to(REPO)}/{name}")
    assert checked > 20 and not missing, missing
