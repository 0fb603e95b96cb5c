"""The daemon part of `faceagent bench`: resource figures of the real daemon on loopback (never assertions).

Starts a private mosquitto and the IAI emulator, spawns `faceagent run` with its own NOTIFY_SOCKET and
measures: start-to-READY, idle CPU over `idle_s`, steady-state RSS, and the local enrollment latency
(command received -> CreateFace sent) per burst size.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from agent.devtools.demo import DEMO_SECRET_ID, DEMO_SECRET_KEY, demo_photo, start_mosquitto

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_daemon(idle_s: float = 60.0, repeats: int = 5, detector: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures of a real daemon on loopback (`detector`: its config section, e.g. from `bench --config`)."""
    from agent.devtools.emulator import make_server
    from agent.iai.client import IaiClient

    work = Path(tempfile.mkdtemp(prefix="faceagent-bench-"))
    broker, port = start_mosquitto(work)
    emulator = make_server(secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY)
    threading.Thread(target=emulator.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    cloud = IaiClient.connect(emulator.base_url, DEMO_SECRET_ID, DEMO_SECRET_KEY)
    cloud.create_group("bench", "Bench")
    config = {"device_id": "bench-cam", "state_dir": str(work / "state"), "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
              "cloud": {"endpoint": emulator.base_url, "rate_limit_per_s": 50, "rate_burst": 50},
              "camera": {"type": "files", "path": str(demo_photo())}, "enroll": {"min_capture_gap_s": 0.05}, "detector": detector or {}}
    (work / "agent.yaml").write_text(yaml.safe_dump(config))
    notify_path = str(work / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
           "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY, "FACEAGENT_LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(work / "agent.yaml")], env=env)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        ready_s = time.monotonic() - started
        time.sleep(2.0)  # let start-up work settle
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(idle_s)
        idle_cpu = 100 * (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
        idle_rss = rss_mb(agent.pid)
        latencies = enroll_latencies(port, cloud, repeats)
        return {"idle_cpu_percent": round(idle_cpu, 2), "rss_mb": round(max(idle_rss, rss_mb(agent.pid)), 1),
                "rss_idle_mb": round(idle_rss, 1), "ready_s": round(ready_s, 2), "enroll_local_ms": latencies,
                "idle_seconds": idle_s}
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        broker.terminate()
        broker.wait(timeout=10)
        emulator.shutdown()
        notify.close()


def enroll_latencies(port: int, cloud: Any, repeats: int) -> dict[str, float]:
    """Median of (total - upload) ms per burst size: command received -> CreateFace sent."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    results: dict[str, dict[str, Any]] = {}
    arrived = threading.Condition()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        data = json.loads(m.payload)
        with arrived:
            results[data["id"]] = data
            arrived.notify_all()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, r, p: subscribed.set()
    client.on_connect = lambda c, u, f, r, p: c.subscribe("faceagent/bench-cam/enroll/result", 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    out: dict[str, float] = {}
    try:
        for faces in (1, 2, 3, 4):
            samples = []
            for n in range(repeats):
                person = f"p{faces}-{n}"
                command_id = f"bench-{faces}-{n}"
                client.publish("faceagent/bench-cam/enroll", json.dumps(
                    {"id": command_id, "person_id": person, "faces": faces,
                     # one photo makes every person: without unique_person_control 0 the second would be a duplicate
                     "create_person": {"group_id": "bench", "person_name": person, "unique_person_control": 0}}), qos=1)
                with arrived:
                    arrived.wait_for(lambda: command_id in results, timeout=60)  # noqa: B023 - waited for here, in this iteration
                result = results.get(command_id)
                if result and result["status"] == "succeeded":
                    timings = result["timings_ms"]
                    samples.append(timings["total"] - timings["upload"])
            out[str(faces)] = round(statistics.median(samples), 1) if samples else -1.0
    finally:
        client.disconnect()
        client.loop_stop()
    return out
