"""The SQLite job store on real files, and sd_notify over a real datagram socket."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.service.protocol import DeleteCommand, EnrollCommand
from agent.service.result import Status
from agent.service.signals import Signals
from agent.service.store import JobKind, JobState, JobStore, Outcome, StoreError
from agent.service.systemd import Notifier
from agent.service.telemetry import Count, Counters, DeviceState, Telemetry


def cmd(job_id: str) -> dict[str, object]:
    return {"id": job_id, "person_id": "1001"}


def test_submit_claim_finish_and_outbox_survive_reopening(state_dir: Path) -> None:
    path = state_dir / "jobs.sqlite3"
    store = JobStore(path)
    assert store.submit(cmd("a"), queue_size=5).outcome == "queued"
    assert store.submit(cmd("a"), queue_size=5).outcome == "duplicate"
    job = store.claim_next()
    assert job is not None and job.id == "a"
    store.finish("a", {"id": "a", "status": "succeeded"}, [("t/result", b"{}", None), ("reply/1", b"{}", b"corr")])
    store.close()
    again = JobStore(path)
    dup = again.submit(cmd("a"), queue_size=5)
    assert dup.outcome == "duplicate" and dup.job.result == {"id": "a", "status": "succeeded"}
    items = again.outbox()
    assert [(i.topic, i.correlation) for i in items] == [("t/result", None), ("reply/1", b"corr")]
    again.delivered(items[0].seq)
    assert len(again.outbox()) == 1


def test_recovery_requeues_running_and_returns_uploading(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    for job_id in ("run", "up", "wait"):
        store.submit(cmd(job_id), queue_size=5)
    store.claim_next()
    store.claim_next()
    store.save_upload("up", {"person_id": "1001", "attempt": {"known_face_ids": ["f1", "f2"]}})
    requeued, uploading = store.recover()
    assert requeued == 1
    assert [(j.id, j.upload["attempt"]["known_face_ids"]) for j in uploading] == [("up", ["f1", "f2"])]  # type: ignore[index]
    assert store.claim_next().id == "run"  # type: ignore[union-attr]


def test_queue_full_counts_running_jobs(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    store.submit(cmd("1"), queue_size=2)
    store.claim_next()
    store.submit(cmd("2"), queue_size=2)
    assert store.submit(cmd("3"), queue_size=2).outcome == "queue_full"
    assert store.get("3") is None  # not stored: the same id may be sent again later


def test_wal_and_full_sync(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_state_dir_is_a_clear_error(state_dir: Path) -> None:
    state_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(StoreError, match="cannot be opened"):
            JobStore(state_dir / "jobs.sqlite3")
    finally:
        state_dir.chmod(0o700)


def test_unwritable_store_raises_store_error(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    store._conn().execute("PRAGMA query_only = ON")  # what a read-only file system looks like to SQLite writes
    with pytest.raises(StoreError, match="cannot be written"):
        store.submit(cmd("x"), queue_size=5)


def test_a_full_disk_is_reported_with_its_real_cause(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    db = store._conn()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full", as on a full file system
    with pytest.raises(StoreError) as info:
        for n in range(200):
            store.submit({"id": f"fill-{n}", "person_id": "1001", "pad": "x" * 2000}, queue_size=1000)
    assert "database or disk is full" in info.value.message and "rollback" not in info.value.message
    assert info.value.code.value == "storage_unavailable" and info.value.retryable
    db.execute("PRAGMA max_page_count = 1000000")
    assert store.submit(cmd("after"), queue_size=1000).outcome == "queued"  # usable again once there is room


def test_state_files_are_private(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    store.submit(cmd("a"), queue_size=5)
    for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
        assert stat.S_IMODE(os.stat(state_dir / name).st_mode) == 0o600, name
    fresh = state_dir / "new" / "deeper"
    JobStore(fresh / "jobs.sqlite3")
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700


def test_a_damaged_store_is_moved_aside_and_a_new_one_started(state_dir: Path) -> None:
    path = state_dir / "jobs.sqlite3"
    store = JobStore(path)
    for n in range(50):
        store.submit({"id": f"j{n}", "person_id": "1001", "pad": "x" * 500}, queue_size=100)
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 300] = b"\xa5" * 300  # scribble over the second page, header included, as a bad SD card does
    path.write_bytes(bytes(data))
    again = JobStore(path)
    assert again.recovered_from is not None and again.recovered_from.exists()
    assert again.submit(cmd("fresh"), queue_size=5).outcome == "queued"


def test_each_thread_has_its_own_connection_and_writes_are_not_lost(state_dir: Path) -> None:
    import threading

    store = JobStore(state_dir / "jobs.sqlite3")
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for n in range(100):
                store.submit({"id": f"{prefix}-{n}", "person_id": "1001"}, queue_size=10_000)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.depth() == 400
    assert len(store._connections) == 5  # the main thread's and one per writer


def test_sd_notify_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_s == 30.0
        assert notifier.ready("ready: cam-01")
        assert server.recv(1024) == b"READY=1\nSTATUS=ready: cam-01"
        assert notifier.watchdog()
        assert server.recv(1024) == b"WATCHDOG=1"
        assert notifier.stopping("bye")
        assert server.recv(1024) == b"STOPPING=1\nSTATUS=bye"


def test_sd_notify_abstract_socket_and_absent() -> None:
    name = f"@faceagent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name[1:])
        server.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": name}).status("x")
        assert server.recv(64) == b"STATUS=x"
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready("x") and quiet.watchdog_s is None
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog is for another process


def test_results_are_kept_for_the_retention_then_the_id_may_run_again(state_dir: Path) -> None:
    store = JobStore(state_dir / "jobs.sqlite3")
    for job_id in ("old", "new", "open"):
        store.submit(cmd(job_id), queue_size=5)
    for job_id in ("old", "new"):
        store.claim_next()
        store.finish(job_id, {"id": job_id, "status": "succeeded"}, [])
    store._conn().execute("UPDATE jobs SET finished_at = finished_at - 31 * 86400 WHERE id = 'old'")
    assert store.prune(30 * 86400) == 1
    assert store.get("old") is None and store.get("new") is not None and store.get("open") is not None  # unfinished jobs stay
    assert store.submit(cmd("old"), queue_size=5).outcome == "queued"  # forgotten: the id is new again


# --- counters ---------------------------------------------------------------------------------------------


def telemetry_of(store: JobStore, counters: Counters) -> dict[str, Any]:
    telemetry = Telemetry(device_id="cam-test", publish=lambda *message: None, state_topic="t/state", telemetry_topic="t/telemetry",
                          interval_s=60, retention_days=7, store=store, counters=counters, device=DeviceState(),
                          signals=Signals(), describe=dict, extra=dict)
    return telemetry.telemetry()


def test_every_counter_counted_is_published(state_dir: Path) -> None:
    """Counts the intake, worker and outbox make (a bug's safety net, a duplicate in progress, an unpublishable topic,
    a dry run) reach `base/telemetry`; a counter nothing counts is not published as a permanent zero."""
    counters = Counters()
    for count in Count:
        counters.inc(count, 2)
    published = telemetry_of(JobStore(state_dir / "jobs.sqlite3"), counters)["counters"]
    assert published == {count.value: 2 for count in Count}
    for name in ("internal_errors", "duplicates_in_progress", "unpublishable", "dry_run"):
        assert published[name] == 2
    assert "dropped_qos0" not in published  # QoS 0 drops are the link's own figure, top-level `dropped_qos0`


def test_every_result_status_has_its_counter() -> None:
    """The worker counts a finished enrollment by its status: none may fall outside the published counters."""
    assert all(Count(status.value) for status in Status)


def test_a_claimed_job_carries_its_command_typed_by_kind(state_dir: Path) -> None:
    """The stored command is read into its type once per job, by the job's kind; state and kind are enums."""
    store = JobStore(state_dir / "jobs.sqlite3")
    assert store.submit({"id": "e", "person_id": "1001", "faces": 2}, queue_size=5).outcome is Outcome.QUEUED
    assert store.submit({"id": "d", "person_id": "1001", "face_ids": ["f1"]}, queue_size=5, kind=JobKind.DELETE).outcome is Outcome.QUEUED
    assert store.submit({"id": "e", "person_id": "1001"}, queue_size=5).outcome is Outcome.DUPLICATE
    enroll, delete = store.claim_next(), store.claim_next()
    assert enroll is not None and delete is not None
    assert isinstance(enroll.task, EnrollCommand) and enroll.task.faces == 2 and enroll.task is enroll.task
    assert isinstance(delete.task, DeleteCommand) and delete.task.face_ids == ["f1"] and delete.kind is JobKind.DELETE
    assert store.get("e").state is JobState.RUNNING  # type: ignore[union-attr]
