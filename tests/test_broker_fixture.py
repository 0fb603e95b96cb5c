"""The private-broker harness works: publish/receive over MQTT 5 and 3.1.1, and survives a restart."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest

from tests.agent_proc import wait_until
from tests.broker import Broker
from tests.mqtt_helpers import Listener


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_publish_and_receive_through_private_broker(broker: Broker, protocol: int) -> None:
    listener = Listener(broker.host, broker.port, ["harness/echo"], protocol=protocol)
    try:
        listener.publish("harness/echo", b"hello", qos=1)
        topic, payload, _, _ = listener.get("harness/echo")
        assert (topic, payload) == ("harness/echo", b"hello")
    finally:
        listener.close()


def test_private_broker_is_ours_not_the_system_broker(own_broker: Broker) -> None:
    """The port belongs to the process the fixture started: stopping it takes the broker away."""
    assert own_broker.port != 1883 and own_broker.host == "127.0.0.1"
    listener = Listener(own_broker.host, own_broker.port, ["harness/mine"])
    listener.close()
    own_broker.stop()
    with pytest.raises(OSError):
        socket.create_connection((own_broker.host, own_broker.port), timeout=2).close()
    own_broker.start()


def test_broker_can_be_stopped_and_restarted_mid_test(own_broker: Broker) -> None:
    listener = Listener(own_broker.host, own_broker.port, ["harness/restart"])
    try:
        listener.publish("harness/restart", b"before")
        assert listener.get("harness/restart")[1] == b"before"
        own_broker.stop()
        assert not own_broker.running
        wait_until(lambda: not listener.subscribed.is_set(), what="the subscriber noticing the broker is gone")
        own_broker.start()
        assert listener.subscribed.wait(15)  # paho reconnects by itself; on_connect resubscribes (SUBACK)
        listener.publish("harness/restart", b"after")
        assert listener.get("harness/restart", timeout=15)[1] == b"after"
    finally:
        listener.close()
