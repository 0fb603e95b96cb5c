"""The outbox at a clean stop: the stopping thread takes it over only once the outbox thread has left it."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from agent.config import config_from_mapping
from agent.service.mqtt import MqttLink
from agent.service.outbox import Outbox
from agent.service.signals import Signals
from agent.service.store import JobStore
from agent.service.telemetry import Counters
from tests.agent_proc import wait_until
from tests.broker import Broker


def test_a_stop_flushes_the_outbox_only_after_its_thread_has_stopped(broker: Broker, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    config = config_from_mapping({"mqtt": {"url": broker.url}, "camera": {"type": "files", "path": "."}}, {})
    acked = threading.Event()

    class Acks(queue.Queue[int]):
        """The link's PUBACK queue, telling the test when one came."""

        def put(self, item: int, block: bool = True, timeout: float | None = None) -> None:
            super().put(item, block, timeout)
            acked.set()

    acks = Acks()
    signals = Signals()
    base = f"outbox-{uuid.uuid4().hex[:8]}"  # the broker is shared by parallel tests
    link = MqttLink(cfg=config.mqtt, client_id=base, password=None, availability_topic=f"{base}/availability",
                    command_topics=[f"{base}/commands"], incoming=queue.Queue(), acks=acks, signals=signals)
    outbox = Outbox(store=store, link=link, acks=acks, counters=Counters(), signals=signals)
    store.enqueue([(f"{base}/result", b'{"id": "first"}', None)])
    link.start()
    busy = sqlite3.connect(str(store.path), isolation_level=None)
    try:
        assert link.connected.wait(10) and acked.wait(10)  # the PUBACK of the link's own "online"
        acked.clear()  # the next one is the stored row's: the only other QoS 1 publication
        busy.execute("BEGIN IMMEDIATE")  # another writer holds the store: the outbox thread's delete of the row waits
        thread = threading.Thread(target=outbox.run, name="faceagent-outbox", daemon=True)
        thread.start()
        wait_until(lambda: acked.is_set() and outbox.acks.empty(), 10, "the PUBACK taken by the outbox thread")
        outbox.stop()
        assert thread.is_alive()  # as the daemon's stop finds it after its 2 s join: stuck on the store (for up to 10 s)
        with caplog.at_level(logging.WARNING, "agent.service.outbox"):
            assert outbox.flush(timeout=2.0) is False  # the stopping thread keeps out of it
        assert "has not stopped" in caplog.text and "published again at the next start" in caplog.text
        busy.execute("ROLLBACK")  # the store is free again: the thread finishes its delete and leaves
        thread.join(timeout=15)
        assert not thread.is_alive() and store.outbox() == []  # delivered once, deleted once
        assert outbox.flush(timeout=2.0) is True  # now the stopping thread owns it
    finally:
        busy.close()
        link.stop()
        store.close()
