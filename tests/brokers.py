"""Private RabbitMQ, NATS and bridged mosquitto brokers on free loopback ports, and a link that can be cut.

Each is owned by one test session (one per pytest-xdist worker): its own ports, node name, data and log
folders under a tmp dir. Nothing here ever talks to the machine's own brokers (1883, 5672, 4222) or its epmd
(4369): the RabbitMQ node gets an epmd of its own on a free port (ERL_EPMD_PORT).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from tests.broker import Broker, free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real script: /usr/sbin/'s wrapper switches to the rabbitmq user
START_TIMEOUT_S = 60.0


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Until `port` accepts a TCP connection; raise with the log when `proc` exits or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')[-3000:] if log.exists() else ''}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s: {log.read_text(errors='replace')[-3000:] if log.exists() else ''}")


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM the process group this helper started (start_new_session), SIGKILL it when it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class RabbitBroker:
    """A RabbitMQ 3.10 node with the rabbitmq_mqtt plugin: MQTT 3.1.1 on `port`, anonymous as `guest`, loopback only."""

    def __init__(self, workdir: Path) -> None:
        if not Path(RABBITMQ_SERVER).exists():
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server); .ci/run installs it")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.epmd_port, self.node_port, self.dist_port = free_port(), free_port(), free_port()
        self.node = f"faceagent-test-{uuid.uuid4().hex[:8]}@localhost"
        self.log = workdir / "rabbitmq.out"
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's: it names the system node
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.node_port}\n"
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        self.epmd: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        d = self.workdir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"), "HOME": str(d), "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"), "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.node_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"), "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
        }

    def start(self) -> None:
        with (self.workdir / "epmd.out").open("ab") as out:
            self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=self.env())
        wait_listening(self.host, self.epmd_port, self.epmd, "epmd", self.workdir / "epmd.out", 10)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([RABBITMQ_SERVER], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=self.env(), cwd=self.workdir)
        try:
            wait_listening(self.host, self.port, self.proc, "rabbitmq-server", self.log)
        except RuntimeError:
            self.stop()
            raise

    def ctl(self, *args: str) -> None:
        """rabbitmqctl against this node (its own epmd and cookie, from env())."""
        done = subprocess.run([str(Path(RABBITMQ_SERVER).with_name("rabbitmqctl")), "-n", self.node, *args], env=self.env(),
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]}: {done.stderr[-1000:]}")

    def stop(self) -> None:
        stop_group(self.proc)
        stop_group(self.epmd)
        self.proc = self.epmd = None


class NatsBroker:
    """nats-server 2.9 with JetStream (MQTT needs it) and its MQTT listener on `port`, loopback only."""

    def __init__(self, workdir: Path) -> None:
        found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
        if not found:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server); .ci/run installs it")
        self.binary = found
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.client_port = free_port()
        self.log = workdir / "nats.log"
        self.conf = workdir / "nats.conf"
        self.conf.write_text(
            f"listen: 127.0.0.1:{self.client_port}\n"
            "http_port: -1\n"
            f"server_name: faceagent_test_{uuid.uuid4().hex[:8]}\n"
            f'jetstream {{ store_dir: "{workdir / "jetstream"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.port} }}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_listening(self.host, self.port, self.proc, "nats-server", self.log, 30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None


BRIDGED_TOPICS = ("faceagent/#", "faceagent-ctl/#", "homeassistant/#")


class BridgedMosquitto:
    """A central mosquitto (where the operator is) and an edge one (where the device is), bridged with MQTT 3.1.1.

    The bridge carries the fleet's, `faceagent ctl`'s and Home Assistant's topics both ways, as a site's bridge
    does; MQTT 5 properties do not cross it. `start()` returns once a message published on the edge reaches the
    central broker.
    """

    def __init__(self, workdir: Path) -> None:
        self.central = Broker(workdir / "central")
        topics = "".join(f"topic {topic} both 1\n" for topic in BRIDGED_TOPICS)
        self.edge = Broker(workdir / "edge", extra_conf=(
            f"connection central\naddress 127.0.0.1:{self.central.port}\nbridge_protocol_version mqttv311\n"
            "cleansession false\nrestart_timeout 1\n" + topics + "topic faceagent-bridge-probe/# out 1\n"))

    def start(self) -> None:
        from tests.mqtt_helpers import Listener

        self.central.start()
        self.edge.start()
        listener = Listener(self.central.host, self.central.port, ["faceagent-bridge-probe/#"])
        try:
            deadline = time.monotonic() + 30
            while True:  # the bridge connects after the edge listens: probe until a message crosses it
                probe = Listener(self.edge.host, self.edge.port, ["faceagent-bridge-probe/none"])
                probe.publish("faceagent-bridge-probe/ping", b"ping", qos=1)
                probe.close()
                try:
                    listener.get("faceagent-bridge-probe/ping", timeout=1.0)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the bridge did not connect: {self.edge.log.read_text(errors='replace')[-2000:]}") from None
        finally:
            listener.close()

    def stop(self) -> None:
        self.edge.stop()
        self.central.stop()


class CuttableLink:
    """A TCP relay on a free loopback port in front of a broker: `cut()` drops every connection and refuses new
    ones (the broker is away, as far as the device can tell), `restore()` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._server: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.restore()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def restore(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        if self._server is not None:
            try:  # wakes the thread blocked in accept(): close() alone leaves the socket listening on Linux
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.cut()
