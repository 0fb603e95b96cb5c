"""The signatures of signed requests already answered, kept on disk for as long as their `ts` is valid.

A captured signed snapshot request (which is never stored as a job) could otherwise be answered again after a
restart. An entry lives until `ts + max_skew_s` on the device clock: after that the same clock refuses the request
by its `ts` anyway, so a clock step cannot open a gap between the two. Its own small SQLite file: it holds no job,
so a damaged one is simply replaced.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000  # signed requests within one validity window; beyond it the oldest are forgotten


class SignedReplays:
    def __init__(self, path: Path, max_skew_s: float) -> None:
        self.path = path
        self.max_skew_s = max_skew_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                log.warning("%s is unreadable (%s): starting a new one", self.path, exc)
                self.path.unlink(missing_ok=True)
                self._db = self._connect()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS seen (sig TEXT PRIMARY KEY, expires REAL NOT NULL)")
        return db

    def first_time(self, sig: str, ts: int, now: float | None = None) -> bool:
        """Record `sig`; False when it was recorded before and its `ts` is still valid. On a storage failure the
        request is refused (answered "already answered"): a replay must not get through a full disk."""
        clock = time.time() if now is None else now
        with self._lock:
            try:
                db = self._open()
                db.execute("DELETE FROM seen WHERE expires < ?", (clock,))
                added = db.execute("INSERT OR IGNORE INTO seen (sig, expires) VALUES (?, ?)", (sig, ts + self.max_skew_s)).rowcount
                db.execute("DELETE FROM seen WHERE sig IN (SELECT sig FROM seen ORDER BY expires DESC LIMIT -1 OFFSET ?)", (MAX_ENTRIES,))
            except sqlite3.Error as exc:
                log.warning("cannot record a signed request in %s (%s): refusing it", self.path, exc)
                return False
        return added == 1

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
