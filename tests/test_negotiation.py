"""doctor's broker check and MQTT versions: a broker that speaks 5 is used with 5; a port that hangs up on both
versions is a failure that names the URL and the fix (the 3.1.1-only brokers themselves: tests/test_brokers.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from agent.cli.doctor_checks import check_broker
from agent.config import Config, config_from_mapping
from tests.broker import Broker


def config_for(url: str, **mqtt: str) -> Config:
    return config_from_mapping({"mqtt": {"url": url, **mqtt}, "camera": {"type": "files", "path": "."}}, {})


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """A loopback port that accepts TCP connections, reads the CONNECT and closes without a CONNACK."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.recv(1024)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"mqtt://127.0.0.1:{server.getsockname()[1]}"
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    assert len(accepted) == 2  # MQTT 5, then 3.1.1


def test_doctor_on_a_port_that_hangs_up_on_both_versions_names_the_url_and_the_fix(hangs_up: str) -> None:
    check = check_broker(config_for(hangs_up))
    assert check.status == "fail" and check.detail == f"{hangs_up} closed the connection without answering CONNECT " \
        "(MQTT 5: it closed the connection without answering)"
    assert check.fix.startswith("is this an MQTT port? check mqtt.url") and 'mqtt.protocol: "3.1.1"' in check.fix


def test_doctor_uses_mqtt5_where_the_broker_speaks_it(broker: Broker) -> None:
    check = check_broker(config_for(broker.url))
    assert check.status == "ok" and check.detail.endswith("MQTT 5)")
    check = check_broker(config_for(broker.url, protocol="3.1.1"))
    assert check.status == "ok" and check.detail.endswith("MQTT 3.1.1)")
