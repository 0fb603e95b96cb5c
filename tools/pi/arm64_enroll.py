"""One real enrollment with the agent running in the arm64 root under qemu (the device side of a Pi).

    python tools/pi/arm64_enroll.py ROOT [--cpu cortex-a72]

Broker and cloud are what a Pi talks to over the network, so they run here on the host, on loopback: a
private mosquitto and the IAI emulator on free ports (agent.devtools.demo's helpers). `faceagent run` runs
inside ROOT (tools/pi/arm64-run.sh) from the venv the README's Pi section makes (/opt/faceagent), on the files
camera with a bundled photo; `faceagent ctl enroll` sends one command from the host as an operator would.
Exit 0 only when the enrollment succeeded, the emulator holds exactly one face for the person, and the agent
exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from agent.devtools.demo import DEMO_SECRET_ID, DEMO_SECRET_KEY, start_mosquitto, wait_online
from agent.devtools.emulator import make_server
from agent.iai.client import IaiClient

RUN_IN_ROOT = Path(__file__).resolve().parent / "arm64-run.sh"
DEVICE = "arm64-cam"
# Under emulation the detector is 10-20x slower than on the host: generous waits, each ended by a fact.
ONLINE_TIMEOUT_S = 600
RESULT_TIMEOUT_S = 600


def signal_name(returncode: int | None) -> str:
    """'exit 0', or the signal that ended a process ('Illegal instruction (SIGILL)'); qemu reports 128+N."""
    if returncode is None:
        return "still running"
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number:
        sig = signal.Signals(number)
        return f"{signal.strsignal(sig)} ({sig.name})"
    return f"exit {returncode}"


def enroll(root: Path, cpu: str) -> int:
    """Run the enrollment; print what ran where; 0 when it succeeded."""
    started = time.monotonic()
    host_work = Path(tempfile.mkdtemp(prefix="faceagent-arm64-host-"))
    inside = Path(tempfile.mkdtemp(prefix="faceagent-arm64-", dir=root / "tmp"))  # the agent's files, in the root
    in_root = Path("/") / inside.relative_to(root)
    broker, port = start_mosquitto(host_work)
    emulator = make_server(secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY)
    threading.Thread(target=emulator.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    cloud = IaiClient.connect(emulator.base_url, DEMO_SECRET_ID, DEMO_SECRET_KEY)
    cloud.create_group("pi", "Raspberry Pi check")
    config = {
        "device_id": DEVICE, "state_dir": str(in_root / "state"),
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}", "telemetry_interval_s": 60},
        "cloud": {"endpoint": emulator.base_url},
        "camera": {"type": "files", "path": "/src/faceagent/tests/data/grace_hopper.jpg"},
        "enroll": {"capture_timeout_s": 60},
    }
    (inside / "agent.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "QEMU_CPU": cpu, "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
           "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY, "FACEAGENT_LOG_LEVEL": "INFO"}
    env.pop("FACEAGENT_CONFIG", None)
    agent_log = host_work / "agent.log"
    with agent_log.open("wb") as log:
        agent = subprocess.Popen([str(RUN_IN_ROOT), str(root), "/opt/faceagent/bin/faceagent", "run", "--config",
                                  str(in_root / "agent.yaml")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_online(port, f"faceagent/{DEVICE}/availability", agent, timeout=ONLINE_TIMEOUT_S):
            print(f"arm64 enrollment: the agent did not come online on {cpu} ({signal_name(agent.poll())})", file=sys.stderr)
            sys.stderr.write(agent_log.read_text(errors="replace")[-4000:])
            return 1
        online_s = time.monotonic() - started
        ctl = subprocess.run(
            [sys.executable, "-m", "agent", "ctl", "enroll", "--device", DEVICE, "--person-id", "1001", "--create-person", "pi",
             "--person-name", "Grace Hopper", "--broker", f"mqtt://127.0.0.1:{port}", "--timeout", str(RESULT_TIMEOUT_S), "--json"],
            env={k: v for k, v in env.items() if k != "QEMU_CPU"}, capture_output=True, text=True, check=False,
        )
        result = json.loads(ctl.stdout) if ctl.stdout.strip() else {}
        faces = cloud.get_person_base_info("1001").face_ids if result.get("status") == "succeeded" else []
        agent.send_signal(signal.SIGTERM)
        agent_rc = agent.wait(timeout=120)
        captures = result.get("captures") or [{}]
        print(f"arm64 enrollment on {cpu}: agent online after {online_s:.1f} s; result {result.get('status', ctl.stderr.strip())}, "
              f"faces added {result.get('faces_added')}, box {captures[0].get('box')}, score {captures[0].get('score')}, "
              f"timings ms {result.get('timings_ms')}; emulator holds {len(faces)} face(s) for person 1001; "
              f"agent {signal_name(agent_rc)} after SIGTERM")
        ok = ctl.returncode == 0 and result.get("status") == "succeeded" and len(faces) == 1 and agent_rc == 0
        if not ok:
            sys.stderr.write(agent_log.read_text(errors="replace")[-4000:])
        return 0 if ok else 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        emulator.shutdown()
        emulator.server_close()
        broker.terminate()
        broker.wait(timeout=10)
        shutil.rmtree(host_work, ignore_errors=True)
        shutil.rmtree(inside, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the arm64 root (tools/pi/arm64-root.sh prints it)")
    parser.add_argument("--cpu", default="cortex-a72", help="QEMU_CPU for the agent (default cortex-a72)")
    args = parser.parse_args()
    return enroll(args.root.resolve(), args.cpu)


if __name__ == "__main__":
    sys.exit(main())
