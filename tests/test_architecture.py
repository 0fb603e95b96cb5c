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


ENVIRON_MUTATORS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


MAX_POSITIONAL = 6  # beyond this a call site cannot be read without the signature beside it: name them


def long_positional_signatures(tree: ast.AST) -> list[tuple[int, str, int]]:
    """(line, function, count) of every function taking more than MAX_POSITIONAL positional parameters (self/cls aside)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(names) > MAX_POSITIONAL:
                found.append((node.lineno, node.name, len(names)))
    return found


def test_no_function_takes_more_than_six_positional_parameters() -> None:
    """Parts are wired by name: constructors and long signatures take keyword-only arguments."""
    offenders = [f"{path.relative_to(REPO)}:{line} {name} ({count})" for path in sorted((REPO / "agent").rglob("*.py"))
                 for line, name, count in long_positional_signatures(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_positional_check_catches_a_long_signature() -> None:
    tree = ast.parse("class A:\n    def f(self, a, b, c, d, e, f, g): ...\n    def g(self, a, b, c, d, e, f, *, g): ...\n")
    assert long_positional_signatures(tree) == [(2, "f", 7)]


def _is_environ(node: ast.AST) -> bool:
    """`os.environ`, or `environ` imported from os."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _writes_environ(node: ast.AST) -> bool:
    targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target] if isinstance(node, ast.AugAssign) else []
    if any(_is_environ(t) or (isinstance(t, ast.Subscript) and _is_environ(t.value)) for t in targets):
        return True
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr in ("putenv", "unsetenv"):
        return isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
    return node.func.attr in ENVIRON_MUTATORS and _is_environ(node.func.value)


def environ_writes(tree: ast.AST) -> list[int]:
    """Lines that change this process's environment: item assignment or deletion, its mutating methods, putenv."""
    return [node.lineno for node in ast.walk(tree) if _writes_environ(node)]


def test_nothing_outside_the_development_tools_writes_the_process_environment() -> None:
    """Settings travel as arguments: a value parked in os.environ for a later reader is hidden state (and children inherit it)."""
    written = [f"{path.relative_to(REPO)}:{line}" for path in SOURCES if not path.is_relative_to(AGENT / "devtools")
               for line in environ_writes(ast.parse(path.read_text(), str(path)))]
    assert not written, written


def test_the_environment_check_catches_each_way_of_writing_it() -> None:
    for source in ('os.environ["X"] = "1"', "del os.environ['X']", "os.environ.update(X='1')", "os.environ.setdefault('X', '1')",
                   "environ['X'] = '1'", "os.putenv('X', '1')", "os.environ |= {'X': '1'}"):
        assert environ_writes(ast.parse(source)) == [1], source
    assert environ_writes(ast.parse("env = {**os.environ, 'X': '1'}; os.environ.get('X'); env['X'] = '2'")) == []


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
