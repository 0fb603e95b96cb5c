"""A device clock that is off, and that NTP steps, for a daemon started with this folder on PYTHONPATH.

`time.time()` (and `time.time_ns()`) return the real time plus the seconds written in the file named by
FACEAGENT_TEST_CLOCK_OFFSET_FILE, read again on every call: the test steps the clock by rewriting it.
`time.monotonic()` is untouched, as on a real device: it never jumps.
"""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("FACEAGENT_TEST_CLOCK_OFFSET_FILE")
_real_time, _real_time_ns = time.time, time.time_ns


def _offset() -> float:
    try:
        with open(_PATH or "", encoding="ascii") as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def _time() -> float:
    return _real_time() + _offset()


def _time_ns() -> int:
    return _real_time_ns() + int(_offset() * 1e9)


if _PATH:
    time.time = _time
    time.time_ns = _time_ns
