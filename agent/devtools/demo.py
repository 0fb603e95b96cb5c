"""`make demo` / `python -m agent.devtools.demo`: the whole product end to end on loopback.

A private mosquitto and the IAI emulator on free loopback ports (never the machine's own services),
the agent on the files camera with a bundled photo, one enrollment sent with `faceagent ctl enroll`,
the result printed, everything stopped again. Exit 0 only when the enrollment succeeded.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
DEMO_PHOTO = ROOT / "demo_photos" / "grace_hopper.jpg"  # package data: the demo runs on an installed faceagent too
DEMO_SECRET_ID, DEMO_SECRET_KEY = "AKIDDEMO0000000000000000000000000000", "demo-secret-key-for-the-emulator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def demo_photo() -> Path:
    if not DEMO_PHOTO.is_file():
        raise FileNotFoundError(f"the demo photo {DEMO_PHOTO} is missing: reinstall faceagent")
    return DEMO_PHOTO


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A private mosquitto on a free loopback port, its files in `work`."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed (sudo apt install mosquitto)")
    port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                         f"log_dest file {work}/mosquitto.log\nuser {getpass.getuser()}\n")
    proc = subprocess.Popen([binary, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def wait_online(port: int, topic: str, agent: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the agent's retained `online` (its subscriptions exist from then on)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    online = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, 1)
    client.on_message = lambda c, u, m: online.set() if m.payload == b"online" else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and agent.poll() is None:
            if online.wait(0.2):
                return True
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def main() -> int:
    try:
        photo = demo_photo()
    except FileNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    if mosquitto_binary() is None:
        print("demo: mosquitto is not installed (sudo apt install mosquitto)", file=sys.stderr)
        return 1
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="faceagent-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # 1. a private broker
        broker, broker_port = start_mosquitto(work)
        procs.append(broker)
        # 2. the IAI emulator, with a group to enroll into
        from agent.devtools.emulator import make_server
        from agent.iai.client import IaiClient

        emulator = make_server(secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY, state_file=work / "iai-state.json")
        threading.Thread(target=emulator.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        cloud = IaiClient.connect(emulator.base_url, DEMO_SECRET_ID, DEMO_SECRET_KEY)
        cloud.create_group("demo", "Demo group")
        # 3. the agent, on the files camera
        config = {
            "device_id": "demo-cam", "state_dir": str(work / "state"),
            "mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "telemetry_interval_s": 30},
            "cloud": {"endpoint": emulator.base_url},
            "camera": {"type": "files", "path": str(photo)},
        }
        (work / "agent.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID, "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY, "FACEAGENT_LOG_LEVEL": "WARNING"}
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(work / "agent.yaml")], env=env)
        procs.append(agent)
        if not wait_online(broker_port, "faceagent/demo-cam/availability", agent, timeout=30):
            print("demo: the agent did not come online", file=sys.stderr)
            return 1
        # 4. one enrollment, as an operator would send it
        operator = ["ctl", "enroll", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--device", "demo-cam", "--person-id", "1001",
                    "--create-person", "demo", "--person-name", "Grace Hopper"]
        ctl = subprocess.run([sys.executable, "-m", "agent", *operator, "--timeout", "60"],
                             env={k: v for k, v in env.items() if k != "FACEAGENT_CONFIG"}, check=False)
        # 5. what ran where
        faces = cloud.get_person_base_info("1001").face_ids if ctl.returncode == 0 else []
        agent.send_signal(signal.SIGTERM)
        agent_rc = agent.wait(timeout=30)
        print("\n--- what ran (everything is stopped again and its temporary folder removed) ---")
        print(f"broker    a private mosquitto on 127.0.0.1:{broker_port}")
        print(f"cloud     the IAI emulator at {emulator.base_url}: person 1001 now holds {len(faces)} face(s) {', '.join(faces)}")
        print(f"device    faceagent run: device demo-cam, the files camera on {photo.name}; exit {agent_rc}")
        print(f"operator  faceagent {shlex.join(operator)}  -> exit {ctl.returncode}")
        print(f"took      {time.monotonic() - started:.1f} s")
        print("yours     the same against your broker and device: faceagent ctl enroll --broker mqtt://BROKER:1883 --device DEVICE "
              "--person-id ID (README, The MQTT API)")
        emulator.shutdown()
        ok = ctl.returncode == 0 and agent_rc == 0 and len(faces) == 1
        print("demo: " + ("enrollment succeeded" if ok else "enrollment did NOT succeed"))
        return 0 if ok else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
