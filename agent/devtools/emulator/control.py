"""POST /_control: the JSON a test sends to set faults, checked whole before anything changes.

A typo (an unknown key, an unknown action, a count that is not an integer) is a 400 answer naming the key, so a
test never runs against a fault it did not get. docs/emulator.md shows every key with its JSON shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.devtools.emulator.calls import FIELDS
from agent.devtools.emulator.faults import Faults, Rule
from agent.devtools.emulator.limits import ACCOUNT_CONDITIONS


class ControlError(ValueError):
    """A control request that cannot be applied; its message names the key."""


@dataclass(frozen=True)
class Change:
    """One checked change: `set` a setting, `extend` a rule list, `update` a per-person hook, or `set_int_form`."""

    op: str
    name: str
    value: Any

RATES = ("error_rate", "http_500_rate", "drop_rate")
COUNTERS = ("http_500_next", "drop_next")
PERSON_HOOKS = ("mismatch_next", "low_quality_next")


def _number(key: str, value: Any, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (high is not None and value > high):
        limit = f"between 0 and {high:g}" if high is not None else ">= 0"
        raise ControlError(f"{key} must be a number {limit}, not {value!r}")
    return float(value)


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(f"{key} must be an integer >= 0, not {value!r}")
    return value


def _action(key: str, value: Any, allow_any: bool) -> str | None:
    if value is None and allow_any:
        return None
    if value not in FIELDS:
        raise ControlError(f"{key}: {value!r} is not an action; use one of {', '.join(sorted(FIELDS))}")
    return str(value)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ControlError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} must be a non-empty string, not {value!r}")
    return value


# Per rule list: (default action, whether any action may be targeted, option parsers with defaults).
RULE_SHAPES: dict[str, tuple[str | None, bool, dict[str, tuple[Any, Callable[[str, Any], Any]]]]] = {
    "fail_next": (None, True, {"code": ("InternalError", _text), "message": ("injected by the emulator", _text)}),
    "delay_next": (None, True, {"ms": (None, _number)}),
    "apply_after_next": ("CreateFace", False, {"ms": (None, _number), "answer": ("late", lambda k, v: _choice(k, v, ("late", "never")))}),
    "apply_then_error_next": ("CreateFace", False, {"code": ("InternalError", _text), "message": ("injected by the emulator", _text)}),
    "apply_then_drop_next": ("CreateFace", False, {}),
    "other_writer_next": (None, True, {"person": (None, _text), "when": ("before", lambda k, v: _choice(k, v, ("before", "after")))}),
    "liveness_score_next": ("DetectLiveFaceAccurate", False, {"score": (None, lambda k, v: _number(k, v, 100.0))}),
}


def _rule(key: str, spec: Any) -> Rule:
    default_action, any_action, options = RULE_SHAPES[key]
    if not isinstance(spec, dict):
        raise ControlError(f"{key} must be an object (or a list of objects), not {spec!r}")
    unknown = set(spec) - {"count", "action", *options}
    if unknown:
        raise ControlError(f"{key} has unknown field(s) {', '.join(sorted(unknown))}")
    if key in ("other_writer_next", "liveness_score_next") and "action" in spec:
        raise ControlError(f"{key} fires on one action only: drop its action")
    parsed: dict[str, Any] = {}
    for name, (default, parse) in options.items():
        if name in spec:
            parsed[name] = parse(f"{key}.{name}", spec[name])
        elif default is None:
            raise ControlError(f"{key}.{name} is required")
        else:
            parsed[name] = default
    action = _action(key, spec.get("action", default_action), any_action)
    return Rule(_count(f"{key}.count", spec.get("count", 1)), action, parsed)


def _rules(key: str, value: Any) -> list[Rule]:
    if key == "apply_then_drop_next" and isinstance(value, int) and not isinstance(value, bool):
        return [Rule(_count(key, value), "CreateFace")]  # the original integer form
    return [_rule(key, spec) for spec in (value if isinstance(value, list) else [value])]


def _qps(value: Any) -> Change:
    if isinstance(value, dict):
        return Change("set", "qps_limits", {str(_action("qps_limit", a, False)): _number(f"qps_limit.{a}", n) for a, n in value.items()})
    return Change("set", "qps_limit", _number("qps_limit", value))


def _change(key: str, value: Any) -> Change:
    if key == "latency_ms":
        return Change("set", key, _number(key, value))
    if key == "qps_limit":
        return _qps(value)
    if key in RATES:
        return Change("set", key, _number(key, value, 1.0))
    if key == "outage":
        if not isinstance(value, bool):
            raise ControlError(f"outage must be true or false, not {value!r}")
        return Change("set", key, value)
    if key == "account":
        return Change("set", key, _choice(key, value, ("ok", *ACCOUNT_CONDITIONS)))
    if key == "allowed_actions":
        if value is not None and not isinstance(value, list):
            raise ControlError(f"allowed_actions must be a list of action names or null, not {value!r}")
        return Change("set", key, None if value is None else frozenset(str(_action(key, a, False)) for a in value))
    if key in COUNTERS:
        return Change("set", key, _count(key, value))
    if key in PERSON_HOOKS:
        if not isinstance(value, dict):
            raise ControlError(f"{key} must be an object {{person_id: count}}, not {value!r}")
        return Change("update", key, {str(person): _count(f"{key}.{person}", n) for person, n in value.items()})
    if key == "apply_then_drop_next" and isinstance(value, int) and not isinstance(value, bool):
        return Change("set_int_form", key, _rules(key, value))
    if key in RULE_SHAPES:
        return Change("extend", key, _rules(key, value))
    raise ControlError(f"unknown control key {key!r}")


def parse(update: Any) -> tuple[list[Change], bool, bool]:
    """(changes to apply, reset_stats, reset_faults) for one control request; ControlError when any key is wrong."""
    if not isinstance(update, dict):
        raise ControlError("the control body must be a JSON object")
    changes = [_change(key, value) for key, value in update.items() if key not in ("reset_stats", "reset_faults")]
    return changes, bool(update.get("reset_stats")), bool(update.get("reset_faults"))


def _apply_change(faults: Faults, change: Change) -> None:
    if change.op == "set":
        setattr(faults, change.name, change.value)
    elif change.op == "update":
        getattr(faults, change.name).update(change.value)
    elif change.op == "extend":
        getattr(faults, change.name).extend(change.value)
    else:  # the integer form of apply_then_drop_next sets the CreateFace count, as it always did
        kept = [r for r in faults.apply_then_drop_next if r.action != "CreateFace"]
        faults.apply_then_drop_next = kept + [r for r in change.value if r.count]


def apply(faults: Faults, update: Any) -> bool:
    """Check then apply one control request to `faults`; whether the stats are to be reset."""
    changes, reset_stats, reset_faults = parse(update)
    if reset_faults:
        faults.reset()
    with faults.lock:
        for change in changes:
            _apply_change(faults, change)
    return reset_stats
