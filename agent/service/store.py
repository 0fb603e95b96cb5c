"""Durable job store and outbox in one SQLite file (WAL, synchronous=FULL) under `state_dir`.

A command is stored before its PUBACK goes out; a job's final result and the messages that publish it
are written in one transaction, so after a crash nothing is lost and nothing is done twice.

Job states: `queued` -> `running` (capturing) -> `uploading` (a CreateFace/CreatePerson may be in
flight: its `upload` progress, with the images of that attempt, is saved before it is sent, and is
settled with the cloud after a crash) -> `done` (final result stored; the images are gone).

Each thread uses its own connection (SQLite serialises writers itself, WAL lets readers go on): no
Python lock is held across a write and its fsync.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any

from agent.errors import ErrorCode, FaceAgentError
from agent.iai.upload import UploadProgress
from agent.service.protocol import DeleteCommand, EnrollCommand

log = logging.getLogger(__name__)

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
    finished_at REAL,
    result TEXT,
    upload TEXT,
    kind TEXT
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
# For files written by older versions; each is applied when its column is missing. `kind` NULL means enroll.
MIGRATIONS = ("ALTER TABLE jobs ADD COLUMN upload TEXT", "ALTER TABLE jobs ADD COLUMN kind TEXT")
CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB

# An outgoing QoS 1 message: (topic, payload, MQTT 5 correlation data or None).
Message = tuple[str, bytes, bytes | None]


class StoreError(FaceAgentError):
    """The state directory cannot be written (full, read-only); the message carries SQLite's own reason."""

    code = ErrorCode.STORAGE_UNAVAILABLE


class StoreCorrupt(StoreError):
    """The database file is damaged: the daemon stops; the next start moves it aside and begins a new one."""


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in CORRUPT_CODES or "malformed" in str(exc) or "not a database" in str(exc)


class JobState(str, Enum):
    """Where a job is (module docstring); stored by value in `jobs.state`."""

    QUEUED = "queued"
    RUNNING = "running"
    UPLOADING = "uploading"
    DONE = "done"


class JobKind(str, Enum):
    """What a job does; one id store for both. Stored by value in `jobs.kind` (NULL, from older files: enroll)."""

    ENROLL = "enroll"
    DELETE = "delete"


class Outcome(str, Enum):
    """What `submit` did with a command."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"  # an existing job with this id, maybe with its result
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class Job:
    id: str
    command: dict[str, Any]  # as stored: a runnable job's validated command, a rejected one's id and person_id only
    state: JobState
    received_at: float
    expires_at: float | None
    response_topic: str | None
    correlation: bytes | None
    upload: dict[str, Any] | None  # the saved upload progress while `uploading`
    result: dict[str, Any] | None
    kind: JobKind = JobKind.ENROLL

    @property
    def person_id(self) -> str | None:
        person_id = self.command.get("person_id")
        return person_id if isinstance(person_id, str) else None

    @cached_property
    def task(self) -> EnrollCommand | DeleteCommand:
        """The command of a job that runs, as its type: validated once per job read (intake validated it before storing)."""
        return (DeleteCommand if self.kind is JobKind.DELETE else EnrollCommand).model_validate(self.command)


@dataclass(frozen=True)
class Outgoing:
    """A QoS 1 message waiting in the outbox until its PUBACK."""

    seq: int
    topic: str
    payload: bytes
    correlation: bytes | None


@dataclass(frozen=True)
class Submitted:
    """What `submit` did, and the job: the new one, or the existing one for a duplicate."""

    outcome: Outcome
    job: Job


_COLUMNS = "id, command, state, received_at, expires_at, response_topic, correlation, upload, result, kind"


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, command, state, received_at, expires_at, response_topic, correlation, upload, result, kind) = row
    return Job(job_id, json.loads(command), JobState(state), received_at, expires_at, response_topic, correlation,
               json.loads(upload) if upload else None, json.loads(result) if result else None, JobKind(kind or JobKind.ENROLL))


def may_run_again(job: Job, kind: str) -> bool:
    """A resent id runs again only when its last result was a retryable failure that applied nothing at the cloud.

    `retryable: true` promises the same command may succeed later: automation with fixed ids must recover from an
    outage. Successes, partial results, `unknown` outcomes, dry runs and anything that created a face or a person
    are replayed, never run again: exactly once still holds.
    """
    result = job.result or {}
    error = result.get("error") or {}
    applied = result.get("faces_added") or result.get("face_ids") or result.get("person_created") or result.get("deleted_face_ids")
    return (job.state == "done" and job.kind == kind and result.get("status") in ("failed", "rejected")
            and error.get("retryable") is True and not applied and not result.get("dry_run"))


class JobStore:
    """Thread-safe through one connection per thread; every write is a short IMMEDIATE transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recovered_from: Path | None = None  # a damaged file moved aside at open
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._create_private(path)
            self._open_checked()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"job store {path} cannot be opened: {exc}") from None

    @staticmethod
    def _create_private(path: Path) -> None:
        """Create the file 0600 (SQLite gives its -wal and -shm files the same mode): commands name people."""
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)

    def _open_checked(self) -> None:
        try:
            db = self._conn()
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for statement in MIGRATIONS:
                if statement.split()[-2] not in columns:
                    db.execute(statement)
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc) or self.recovered_from is not None:
                raise
            self._move_aside(exc)
            self._open_checked()

    def _move_aside(self, exc: sqlite3.Error) -> None:
        self.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                source.rename(Path(str(aside) + suffix))
        self.recovered_from = aside
        log.error("job store %s was damaged (%s): moved aside to %s and started empty; queued commands in it are lost",
                  self.path, exc, aside)
        self._create_private(self.path)

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a stored command survives power loss
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        cls = StoreCorrupt if _is_corrupt(exc) else StoreError
        return cls(f"job store {self.path} cannot be {doing}: {exc}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._conn()  # a thread's first connection opens files: no descriptor left is a storage failure too
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "written") from None

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # --- commands ----------------------------------------------------------------------------------------

    def submit(
        self, command: dict[str, Any], *, queue_size: int, expires_at: float | None = None,
        response_topic: str | None = None, correlation: bytes | None = None, now: float | None = None,
        kind: JobKind = JobKind.ENROLL,
    ) -> Submitted:
        """Store a new command as queued, or report the existing job with this id, or that the queue is full."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (command["id"],)).fetchone()
            again = row is not None and may_run_again(_job(row), kind)
            if row is not None and not again:
                return Submitted(Outcome.DUPLICATE, _job(row))
            depth = db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0]
            job = Job(command["id"], command, JobState.QUEUED, now, expires_at, response_topic, correlation, None, None, kind)
            if depth >= queue_size:
                return Submitted(Outcome.QUEUE_FULL, job)
            if again:
                log.info("command %s: its last result was a retryable failure that applied nothing: running it again", job.id)
                db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
            db.execute(
                "INSERT INTO jobs (id, command, state, received_at, expires_at, response_topic, correlation, kind) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job.id, json.dumps(command), now, expires_at, response_topic, correlation, kind.value),
            )
            return Submitted(Outcome.QUEUED, job)

    def store_final(self, command: dict[str, Any], result: dict[str, Any], messages: list[Message],
                    response_topic: str | None = None, correlation: bytes | None = None, kind: JobKind = JobKind.ENROLL) -> None:
        """Record a command that never runs (rejected, expired) with its result, so a duplicate id replays it."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, command, state, received_at, response_topic, correlation, finished_at, result, kind) "
                "VALUES (?, ?, 'done', ?, ?, ?, ?, ?, ?)",
                (command["id"], json.dumps(command), now, response_topic, correlation, now, json.dumps(result), kind.value),
            )
            self._enqueue(db, messages, now)

    def claim_next(self) -> Job | None:
        """The oldest queued job, now `running`."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY received_at LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?", (time.time(), row[0]))
            return _job(row)

    def save_upload(self, job_id: str, upload: dict[str, Any]) -> None:
        """Persist the upload progress (with the attempt about to be sent): the base of any reconciliation."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'uploading', upload = ? WHERE id = ?", (json.dumps(upload), job_id))

    def record(self, key: str, progress: UploadProgress) -> None:
        """The uploader's `Journal`: the upload of job `key`, durable (synchronous=FULL) before its attempt is sent."""
        self.save_upload(key, progress.to_json())

    def requeue(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'queued', upload = NULL WHERE id = ? AND state = 'running'", (job_id,))

    def finish(self, job_id: str, result: dict[str, Any], messages: list[Message]) -> None:
        """Store the final result and the messages that publish it, atomically; the upload's images go."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = 'done', finished_at = ?, result = ?, upload = NULL WHERE id = ?",
                       (now, json.dumps(result), job_id))
            self._enqueue(db, messages, now)

    def enqueue(self, messages: list[Message]) -> None:
        with self._tx() as db:
            self._enqueue(db, messages, time.time())

    @staticmethod
    def _enqueue(db: sqlite3.Connection, messages: list[Message], now: float) -> None:
        db.executemany("INSERT INTO outbox (topic, payload, correlation, created_at) VALUES (?, ?, ?, ?)",
                       [(topic, payload, correlation, now) for topic, payload, correlation in messages])

    def recover(self) -> tuple[int, list[Job]]:
        """After a restart: `running` jobs go back to the queue (capture again); `uploading` ones are returned to settle."""
        with self._tx() as db:
            requeued = db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'").rowcount
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = 'uploading' ORDER BY received_at").fetchall()
        return requeued, [_job(r) for r in rows]

    def get(self, job_id: str) -> Job | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def depth(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM jobs WHERE state != 'done'")[0][0])

    # --- outbox -------------------------------------------------------------------------------------------

    def outbox(self, limit: int = 100, after: int = 0) -> list[Outgoing]:
        rows = self._read("SELECT seq, topic, payload, correlation FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [Outgoing(seq, topic, bytes(payload), correlation) for seq, topic, payload, correlation in rows]

    def delivered(self, seq: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def prune(self, older_than_s: float) -> int:
        """Forget finished jobs older than the retention (their ids can then run again)."""
        with self._tx() as db:
            return int(db.execute("DELETE FROM jobs WHERE state = 'done' AND finished_at < ?", (time.time() - older_than_s,)).rowcount)
