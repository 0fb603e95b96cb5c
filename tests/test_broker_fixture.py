"""The private-broker harness works: publish/receive over MQTT 5 and 3.1.1, and survives a restart."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

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


def test_private_broker_is_not_the_system_broker(broker: Broker) -> None:
    assert broker.port != 1883
    assert broker.host == "127.0.0.1"


def test_broker_can_be_stopped_and_restarted_mid_test(own_broker: Broker) -> None:
    listener = Listener(own_broker.host, own_broker.port, ["harness/restart"])
    try:
        listener.publish("harness/restart", b"before")
        assert listener.get("harness/restart")[1] == b"before"
        own_broker.stop()
        assert not own_broker.running
        own_broker.start()
        # paho reconnects by itself; on_connect resubscribes.
        for _ in range(100):
            if listener.client.is_connected():
                break
            time.sleep(0.1)
        assert listener.client.is_connected()
        listener.publish("harness/restart", b"after")
        assert listener.get("harness/restart", timeout=15)[1] == b"after"
    finally:
        listener.close()
