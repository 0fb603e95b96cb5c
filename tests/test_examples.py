"""The scripts in examples/ work as their comments say, against a real daemon, broker and emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.agent_proc import COMMAND_KEY, listen, result_for
from tests.broker import Broker
from tests.conftest import EMU_ID, EMU_KEY, REPO

EXAMPLES = REPO / "examples"


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": "/usr/bin:/bin", **(env or {})}, cwd=REPO)


def test_enroll_example_enrolls_and_prints_the_result(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker)
    proc = run("enroll.py", "--broker", f"{broker.host}:{broker.port}", "--device", agent.device_id, "--person", person)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["status"] == "succeeded" and len(result["face_ids"]) == 1
    assert "[capturing]" in proc.stdout


def test_sign_command_example_is_accepted_by_a_device_that_requires_signatures(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY}, commands={"require_signature": True})
    proc = run("sign_command.py", "--device", agent.device_id, "--person", person, env={"FACEAGENT_COMMAND_KEY": COMMAND_KEY})
    assert proc.returncode == 0, proc.stderr
    signed = json.loads(proc.stdout)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", proc.stdout.strip())
        assert result_for(listener, agent.base, signed["id"])["status"] == "succeeded"
    finally:
        listener.close()


def test_sdk_example_talks_to_the_emulator(emulator: Any) -> None:
    proc = run("sdk_against_emulator.py", emulator.base_url, env={"TENCENTCLOUD_SECRET_ID": EMU_ID, "TENCENTCLOUD_SECRET_KEY": EMU_KEY})
    assert proc.returncode == 0, proc.stderr
    assert "staff" in proc.stdout


def test_the_readme_python_example_waits_for_its_result(broker: Broker, make_agent: Any, person: str) -> None:
    """The README's "From Python" block as printed (only the port differs): it publishes, waits and prints the result."""
    agent = make_agent(broker, "cam-01")
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### From Python"):]
    start = section.index("```python") + len("```python")
    code = section[start : section.index("```", start)]
    assert 'client.connect("127.0.0.1", 1883)' in code
    code = code.replace('client.connect("127.0.0.1", 1883)', f'client.connect("127.0.0.1", {broker.port})')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    topic, _, printed = proc.stdout.partition(" ")
    assert topic == f"{agent.base}/enroll/result" and "'status': 'succeeded'" in printed and "'faces_added': 2" in printed
