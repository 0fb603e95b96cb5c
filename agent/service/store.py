"""Durable job store and outbox in one SQLite file (WAL, synchronous=FULL) under `state_dir`.

A command is stored before its PUBACK goes out; a job's final result and the messages that publish it
are written in one transaction, so after a crash nothing is lost and nothing is done twice.

Job states: `queued` -> `running` (capturing) -> `uploading` (CreateFace may be in flight: reconcile
after a crash) -> `done` (final result stored).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ErrorCode, FaceAgentError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    expires_at REAL,
    response_topic TEXT,
    correlation BLOB,
    started_at REAL,
    known_face_ids TEXT,
    finished_at REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, received_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    correlation BLOB,
    created_at REAL NOT NULL
);
"""


# An outgoing QoS 1 message: (topic, payload, MQTT 5 correlation data or None).
Message = tuple[str, bytes, bytes | None]


class StoreError(FaceAgentError):
    """The state directory cannot be written (full, read-only, corrupt)."""

    code = ErrorCode.INTERNAL


@dataclass(frozen=True)
class Job:
    id: str
    command: dict[str, Any]
    state: str
    received_at: float
    expires_at: float | None
    response_topic: str | None
    correlation: bytes | None
    known_face_ids: list[str] | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Outgoing:
    """A QoS 1 message waiting in the outbox until its PUBACK."""

    seq: int
    topic: str
    payload: bytes
    correlation: bytes | None


@dataclass(frozen=True)
class Submitted:
    """What `submit` did: `queued`, `duplicate` (an existing job, maybe with its result) or `queue_full`."""

    outcome: str
    job: Job


class JobStore:
    """Thread-safe: one connection, one lock; every write is a short IMMEDIATE transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a stored command survives power loss
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"job store {path} cannot be opened: {exc}") from None
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"job store {self.path} cannot be written: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _job(row: tuple[Any, ...]) -> Job:
        (job_id, command, state, received_at, expires_at, response_topic, correlation, known, result) = row
        return Job(job_id, json.loads(command), state, received_at, expires_at, response_topic, correlation,
                   json.loads(known) if known else None, json.loads(result) if result else None)

    _COLUMNS = "id, command, state, received_at, expires_at, response_topic, correlation, known_face_ids, result"

    def submit(
        self, command: dict[str, Any], *, queue_size: int, expires_at: float | None = None,
        response_topic: str | None = None, correlation: bytes | None = None, now: float | None = None,
    ) -> Submitted:
        """Store a new command as queued, or report the existing job with this id, or that the queue is full."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (command["id"],)).fetchone()
            if row is not None:
                return Submitted("duplicate", self._job(row))
            depth = db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0]
            job = Job(command["id"], command, "queued", now, expires_at, response_topic, correlation, None, None)
            if depth >= queue_size:
                return Submitted("queue_full", job)
            db.execute(
                "INSERT INTO jobs (id, command, state, received_at, expires_at, response_topic, correlation) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (job.id, json.dumps(command), now, expires_at, response_topic, correlation),
            )
            return Submitted("queued", job)

    def store_final(self, command: dict[str, Any], result: dict[str, Any], messages: list[Message],
                    response_topic: str | None = None, correlation: bytes | None = None) -> None:
        """Record a command that never runs (rejected, expired) with its result, so a duplicate id replays it."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, command, state, received_at, response_topic, correlation, finished_at, result) "
                "VALUES (?, ?, 'done', ?, ?, ?, ?, ?)",
                (command["id"], json.dumps(command), now, response_topic, correlation, now, json.dumps(result)),
            )
            self._enqueue(db, messages, now)

    def claim_next(self) -> Job | None:
        """The oldest queued job, now `running`."""
        with self._tx() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY received_at LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?", (time.time(), row[0]))
            return self._job(row)

    def mark_uploading(self, job_id: str, known_face_ids: list[str]) -> None:
        """Persist, before CreateFace is sent, what the person's faces were: the base of any reconciliation."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'uploading', known_face_ids = ? WHERE id = ?", (json.dumps(known_face_ids), job_id))

    def requeue(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'queued', known_face_ids = NULL WHERE id = ? AND state != 'done'", (job_id,))

    def finish(self, job_id: str, result: dict[str, Any], messages: list[Message]) -> None:
        """Store the final result and the messages that publish it, atomically."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'done', finished_at = ?, result = ? WHERE id = ?", (now, json.dumps(result), job_id))
            self._enqueue(db, messages, now)

    def enqueue(self, messages: list[Message]) -> None:
        with self._tx() as db:
            self._enqueue(db, messages, time.time())

    @staticmethod
    def _enqueue(db: sqlite3.Connection, messages: list[Message], now: float) -> None:
        db.executemany("INSERT INTO outbox (topic, payload, correlation, created_at) VALUES (?, ?, ?, ?)",
                       [(topic, payload, correlation, now) for topic, payload, correlation in messages])

    def recover(self) -> tuple[int, list[Job]]:
        """After a restart: `running` jobs go back to the queue (capture again); `uploading` ones are returned to reconcile."""
        with self._tx() as db:
            requeued = db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'").rowcount
            rows = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE state = 'uploading' ORDER BY received_at").fetchall()
        return requeued, [self._job(r) for r in rows]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0])

    def outbox(self, limit: int = 100) -> list[Outgoing]:
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, correlation FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Outgoing(seq, topic, bytes(payload), correlation) for seq, topic, payload, correlation in rows]

    def delivered(self, seq: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def prune(self, older_than_s: float) -> int:
        """Forget finished jobs older than the retention (their ids can then run again)."""
        with self._tx() as db:
            return db.execute("DELETE FROM jobs WHERE state = 'done' AND finished_at < ?", (time.time() - older_than_s,)).rowcount
