"""One daemon per state folder: an exclusive lock on `state_dir/faceagent.lock`, taken before anything is recovered.

Two processes on one job store would both recover a `running` job and both upload it (two faces on the person,
two `succeeded` results for one id). `flock` is released by the kernel when its holder dies, kill -9 included,
so a lock left by a crash never blocks the next start. The file holds the holder's pid, for the message a second
process prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

from agent.errors import ConfigError

LOCK_NAME = "faceagent.lock"
CONFLICT_NOTE = "identity-conflict"  # left by a daemon that stopped because another one uses its device id; read by doctor


class StateLock:
    """Held from `acquire()` to `release()` (or the end of the process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._file: BinaryIO | None = None  # a file object: dropped with its App (a start that failed), it unlocks

    def acquire(self) -> None:
        """Take the lock, or raise `ConfigError` naming the folder and the process that holds it (`run` exits 78)."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError([("state_dir", f"{self.path}: cannot create the lock file: {exc.strerror or exc}")]) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError([("state_dir", (
                f"{self.folder} is in use by another faceagent process (pid {holder}): one daemon per state folder, "
                "or both would run the same jobs. Stop the other one first (sudo systemctl stop faceagent), or give "
                "this one a state_dir of its own"))]) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._file = os.fdopen(fd, "wb", buffering=0)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock; the file stays (its pid is only a hint)
            self._file = None


def leave_conflict_note(folder: Path, detail: str) -> None:
    """Say, for doctor, why this daemon stopped (its exit status and log say it too); cleared by the next start."""
    try:
        (folder / CONFLICT_NOTE).write_text(detail + "\n")
    except OSError:
        pass  # the log and exit 78 still say it


def clear_conflict_note(folder: Path) -> None:
    (folder / CONFLICT_NOTE).unlink(missing_ok=True)
