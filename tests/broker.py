"""A private mosquitto on a free loopback port, owned by one test session (or one test)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
    return found


class Broker:
    """mosquitto 2.x with its own config, persistence and log under `workdir`; MQTT 5 and 3.1.1.

    `stop()` and `start()` may be called mid-test to simulate an outage; the port and the
    persistence file are kept, so persistent sessions and queued QoS 1 messages survive.
    """

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "max_queued_messages 10000\n"
            # Started as root, mosquitto would switch to the `mosquitto` user and could not write here.
            f"user {getpass.getuser()}\n"
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"mosquitto exited: {err} {self.log.read_text() if self.log.exists() else ''}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def password_tls_broker(workdir: Path, users: dict[str, str]) -> tuple[Broker, int, dict[str, Path], dict[str, Path]]:
    """A broker (not started) refusing anonymous clients on its plain listener and on a TLS one (the returned port);
    `users` name -> password. Also its PKI and another one (a CA it does not know). Skips without openssl."""
    import pytest

    from tests.test_hardening import make_pki

    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("openssl and mosquitto_passwd are needed")
    pki, other = make_pki(workdir / "pki", "good"), make_pki(workdir / "other", "other")
    passwords = workdir / "passwords"
    workdir.mkdir(parents=True, exist_ok=True)
    for i, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password],
                       check=True, capture_output=True)
    passwords.chmod(0o600)
    tls_port = free_port()
    broker = Broker(workdir / "broker", extra_conf=(f"listener {tls_port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['server']}\n"
                                                    f"keyfile {pki['server_key']}\npassword_file {passwords}\n"))
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    return broker, tls_port, pki, other
