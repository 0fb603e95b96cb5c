"""The one retry policy (bounded attempts, overall deadline, exponential backoff with full jitter) and a token bucket."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` tries (the first included) within `deadline_s`; waits drawn from [0, min(cap, base * 2**n)]."""

    max_attempts: int = 4
    deadline_s: float = 30.0
    base_s: float = 0.5
    max_s: float = 8.0

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before retry `retry_number` (0 for the first retry)."""
        ceiling = min(self.max_s, self.base_s * (2 ** retry_number))
        return (rng or random).uniform(0.0, ceiling)


class TokenBucket:
    """Client-side rate limit: `rate` tokens per second, at most `burst` saved up. Thread-safe.

    Adaptive (AIMD, as TCP does): every rate-limit answer from the service halves the rate (down to
    `min_rate`), every success wins back a tenth of the configured rate. Many devices sharing one
    account's limit thus settle near their fair share instead of retrying in lockstep.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        min_rate: float = 0.2,
    ) -> None:
        self.max_rate = rate
        self.min_rate = min(min_rate, rate)
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def slow_down(self) -> None:
        """The service said "too many requests": halve the rate and drop saved-up tokens."""
        with self._lock:
            self._refill()
            self.rate = max(self.min_rate, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)

    def speed_up(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 10)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one token, waiting for it; False when it would take longer than `timeout` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(wait)
