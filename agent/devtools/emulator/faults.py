"""The faults the emulator can inject: persistent settings and one-shot rules, consumed as requests arrive.

Set by command-line flags and by POST /_control (control.py parses it); read by the server. Every field is
guarded by `lock`, since the control endpoint and the request handlers run on different threads.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rule:
    """A one-shot fault: fires for the next `count` requests of `action` (any action when None)."""

    count: int
    action: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, action: str) -> bool:
        return self.count > 0 and self.action in (None, action)


RULE_LISTS = ("fail_next", "delay_next", "apply_after_next", "apply_then_error_next", "apply_then_drop_next", "other_writer_next",
              "liveness_score_next")


@dataclass
class Faults:
    """Persistent settings first, then the one-shot rules and counters (docs/emulator.md, "Faults")."""

    latency_ms: float = 0.0
    qps_limit: float = 0.0  # requests/s over all actions; 0: off
    error_rate: float = 0.0
    http_500_rate: float = 0.0
    drop_rate: float = 0.0
    outage: bool = False
    account: str = "ok"
    allowed_actions: frozenset[str] | None = None  # the key's CAM policy; None: every action
    qps_limits: dict[str, float] = field(default_factory=dict)  # per action
    fail_next: list[Rule] = field(default_factory=list)
    delay_next: list[Rule] = field(default_factory=list)
    apply_after_next: list[Rule] = field(default_factory=list)
    apply_then_error_next: list[Rule] = field(default_factory=list)
    apply_then_drop_next: list[Rule] = field(default_factory=list)
    other_writer_next: list[Rule] = field(default_factory=list)
    liveness_score_next: list[Rule] = field(default_factory=list)  # DetectLiveFaceAccurate answers exactly this Score
    http_500_next: int = 0
    drop_next: int = 0
    mismatch_next: dict[str, int] = field(default_factory=dict)
    low_quality_next: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take_rule(self, name: str, action: str) -> Rule | None:
        """Consume one count of the first rule in list `name` that matches `action`; a copy of it, or None."""
        with self.lock:
            for rule in getattr(self, name):
                if rule.matches(action):
                    rule.count -= 1
                    return Rule(1, rule.action, dict(rule.options))
        return None

    def take_count(self, name: str) -> bool:
        """Consume one count of an integer `*_next` fault (http_500_next, drop_next)."""
        with self.lock:
            value = getattr(self, name)
            if value > 0:
                setattr(self, name, value - 1)
                return True
        return False

    def take_person(self, name: str, person_id: str) -> bool:
        """Consume one count of a per-person hook (mismatch_next, low_quality_next)."""
        with self.lock:
            hook: dict[str, int] = getattr(self, name)
            if hook.get(person_id, 0) > 0:
                hook[person_id] -= 1
                return True
        return False

    def take_other_writer(self, person_id: str) -> str | None:
        """`before` or `after` when another writer is due to add a face to this person now."""
        with self.lock:
            for rule in self.other_writer_next:
                if rule.count > 0 and rule.options["person"] == person_id:
                    rule.count -= 1
                    return str(rule.options["when"])
        return None

    def chance(self, name: str) -> bool:
        """True with the probability of a rate setting (error_rate, http_500_rate, drop_rate)."""
        rate = float(getattr(self, name))
        return rate > 0 and random.random() < rate

    def reset(self) -> None:
        """Every setting back to its default and every one-shot rule dropped."""
        with self.lock:
            fresh = Faults()
            for name in self.__dataclass_fields__:
                if name != "lock":
                    setattr(self, name, getattr(fresh, name))
