"""The time sources the daemon reads, as one object: the system's by default, a test's where it needs to step them.

`wall` is the device's clock (what signs requests, what `expires_at` and `ts` are compared with): a Pi without a
real-time clock boots with a stale one and NTP steps it later. `monotonic` never jumps within a boot: every window
the exactly-once bookkeeping measures runs on it. `sleep` is how the retry loops wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


SYSTEM_CLOCK = Clock()
