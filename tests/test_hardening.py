"""Proof under attack and faults: TLS/mTLS, signed commands, policy guard, cloud outage, camera loss, bad state dir."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttConfig
from agent.service.mqtt import build_client, connect_async
from tests.agent_proc import command, result_for
from tests.broker import Broker, free_port
from tests.conftest import DATA, faces
from tests.iai_helpers import control
from tests.mqtt_helpers import Listener

# --- TLS ---------------------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path, name: str) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by that CA."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    for role, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=faceagent-{role}", "-keyout", f"{role}.key", "-out", f"{role}.csr", cwd=folder)
        (folder / f"{role}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", f"{role}.ext", "-out", f"{role}.pem", cwd=folder)
    return {n: folder / f"{n}.pem" if not n.endswith("key") else folder / f"{n.removesuffix('_key')}.key"
            for n in ("ca", "server", "client", "server_key", "client_key")}


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, Any]]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    work = tmp_path_factory.mktemp("tls")
    pki = make_pki(work / "pki", "good")
    other = make_pki(work / "other", "other")
    tls_port, mtls_port = free_port(), free_port()
    extra = (
        f"listener {tls_port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
        f"listener {mtls_port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    broker = Broker(work / "broker", extra_conf=extra)
    broker.start()
    yield broker, {"pki": pki, "other": other, "tls_port": tls_port, "mtls_port": mtls_port}
    broker.stop()


def connects(cfg: MqttConfig, timeout: float = 8.0) -> bool:
    """Whether the agent's own client construction connects with this config."""
    client = build_client(cfg, f"tls-probe-{time.monotonic_ns()}", None, None)
    done, ok = threading.Event(), []
    client.on_connect = lambda c, u, f, r, p: (ok.append(not r.is_failure), done.set())
    client.on_connect_fail = lambda c, u: done.set()
    client.on_disconnect = lambda c, u, f, r, p: done.set()
    try:
        connect_async(client, cfg)
        client.loop_start()
        done.wait(timeout)
        return bool(ok and ok[0])
    finally:
        client.disconnect()
        client.loop_stop()


def test_tls_server_verification_on_by_default(tls_broker: tuple[Broker, dict[str, Any]]) -> None:
    _, info = tls_broker
    url = f"mqtts://127.0.0.1:{info['tls_port']}"
    assert connects(MqttConfig(url=url, tls={"ca_file": info["pki"]["ca"]}))
    assert not connects(MqttConfig(url=url))  # the system CAs do not know the test CA: refused
    assert not connects(MqttConfig(url=url, tls={"ca_file": info["other"]["ca"]}))  # wrong CA: refused


def test_mutual_tls_needs_the_client_certificate(tls_broker: tuple[Broker, dict[str, Any]]) -> None:
    _, info = tls_broker
    url = f"mqtts://127.0.0.1:{info['mtls_port']}"
    pki = info["pki"]
    assert connects(MqttConfig(url=url, tls={"ca_file": pki["ca"], "cert_file": pki["client"], "key_file": pki["client_key"]}))
    assert not connects(MqttConfig(url=url, tls={"ca_file": pki["ca"]}))


def test_plaintext_is_refused_when_tls_is_configured(tls_broker: tuple[Broker, dict[str, Any]]) -> None:
    broker, info = tls_broker
    # mqtts:// to a plaintext listener: the TLS handshake fails, nothing is sent in the clear
    assert not connects(MqttConfig(url=f"mqtts://127.0.0.1:{broker.port}", tls={"ca_file": info["pki"]["ca"]}))
    # and a plaintext client cannot talk to the TLS listener
    assert not connects(MqttConfig(url=f"mqtt://127.0.0.1:{info['tls_port']}"))


def test_enrollment_over_mutual_tls(tls_broker: tuple[Broker, dict[str, Any]], tmp_path: Path, emulator: Any, person: str,
                                    make_agent: Any) -> None:
    broker, info = tls_broker
    pki = info["pki"]
    tls = {"ca_file": str(pki["ca"]), "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])}
    agent = make_agent(broker, wait=False, mqtt={"url": f"mqtts://127.0.0.1:{info['mtls_port']}", "tls": tls})
    agent.wait_online(broker)  # availability is seen through the plaintext listener of the same broker
    listener = Listener(broker.host, broker.port, [f"{agent.base}/enroll/result"])
    try:
        listener.publish(f"{agent.base}/enroll", command("tls-1", person))
        assert result_for(listener, agent.base, "tls-1")["status"] == "succeeded"
    finally:
        listener.close()


# --- faults --------------------------------------------------------------------------------------------


def test_cloud_outage_longer_than_the_deadline_then_recovery(broker: Broker, tmp_path: Path, emulator: Any, person: str,
                                                            make_agent: Any) -> None:
    agent = make_agent(broker, cloud={"deadline_s": 2, "read_timeout_s": 2, "max_attempts": 10})
    listener = Listener(broker.host, broker.port, [f"{agent.base}/enroll/result"])
    try:
        control(emulator, outage=True)
        listener.publish(f"{agent.base}/enroll", command("o-1", person))
        down = result_for(listener, agent.base, "o-1")
        assert (down["status"], down["error"]["code"], down["error"]["retryable"]) == ("failed", "cloud_unavailable", True)
        control(emulator, outage=False)
        listener.publish(f"{agent.base}/enroll", command("o-2", person))
        assert result_for(listener, agent.base, "o-2")["status"] == "succeeded"
        assert len(faces(emulator, "1001")) == 2
    finally:
        control(emulator, outage=False)
        listener.close()


def test_camera_vanishing_mid_burst_then_returning(broker: Broker, tmp_path: Path, emulator: Any, person: str,
                                                   make_agent: Any) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(DATA / "coffee.png", frames / "a.png")  # no face: the burst keeps reading
    agent = make_agent(broker, camera={"path": str(frames)}, enroll={"capture_timeout_s": 20})
    listener = Listener(broker.host, broker.port, [f"{agent.base}/enroll/result", f"{agent.base}/enroll/progress"])
    try:
        listener.publish(f"{agent.base}/enroll", command("v-1", person))
        listener.get_json(f"{agent.base}/enroll/progress", where=lambda p: p["state"] == "capturing")
        (frames / "a.png").unlink()  # the camera is gone
        gone = result_for(listener, agent.base, "v-1")
        assert (gone["status"], gone["error"]["code"]) == ("failed", "camera_unavailable")
        assert "a.png" in gone["error"]["message"]
        shutil.copy(DATA / "grace_hopper.jpg", frames / "a.png")  # and back, now with a face in view
        listener.publish(f"{agent.base}/enroll", command("v-2", person))
        assert result_for(listener, agent.base, "v-2")["status"] == "succeeded"
        assert agent.alive
    finally:
        listener.close()


def test_unwritable_state_dir_is_a_clear_error_without_a_restart_loop(broker: Broker, tmp_path: Path, emulator: Any,
                                                                      make_agent: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    agent = make_agent(broker, wait=False, state_dir=str(blocker / "state"), process=True)
    assert agent.proc is not None
    assert agent.proc.wait(timeout=60) == 78  # RestartPreventExitStatus=78: systemd does not loop
    assert f"state_dir: {blocker / 'state'}: {blocker} is not a directory" in agent.log()  # said before anything is opened

