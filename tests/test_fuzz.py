"""Property tests: nothing but a command or a rejection comes out of the parser, nothing but a config or a ConfigError out of the loader."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import Config, config_from_mapping
from agent.errors import ConfigError, ErrorCode
from agent.service.protocol import EnrollCommand, Rejection, parse_command

FIELDS = ["id", "person_id", "faces", "capture_timeout_s", "expires_at", "face_match_threshold", "quality_control",
          "need_rotate_detection", "create_person", "preview", "ts", "sig", "extra"]
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=80)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
plausible_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True) | st.text(max_size=70)
# The fast suite runs a tenth of the examples; `make test-slow` runs them all (FACEAGENT_FUZZ_DEEP=1).
DEPTH = 1.0 if os.environ.get("FACEAGENT_FUZZ_DEEP") == "1" else 0.1


def examples(full: int) -> int:
    return max(50, int(full * DEPTH))


commands = st.fixed_dictionaries(
    {"id": plausible_ids, "person_id": st.from_regex(r"[A-Za-z0-9%@#&_-]{1,64}", fullmatch=True) | st.text(max_size=70)},
    optional={name: json_values for name in FIELDS[2:]} | {"faces": st.integers(-2, 6), "preview": st.booleans()},
)


def check(outcome: Any) -> None:
    if isinstance(outcome, EnrollCommand):
        assert 1 <= outcome.faces <= 4
        return
    assert isinstance(outcome, Rejection)
    assert outcome.status in {"rejected", "expired"}
    assert outcome.code in {ErrorCode.INVALID_COMMAND, ErrorCode.EXPIRED}
    assert outcome.message and len(outcome.message) < 2000


@settings(max_examples=examples(2500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
def test_command_parser_on_structured_input(data: dict[str, Any]) -> None:
    check(parse_command(json.dumps(data).encode()))


@settings(max_examples=examples(2000), deadline=None)
@given(st.binary(max_size=400))
def test_command_parser_on_arbitrary_bytes(payload: bytes) -> None:
    outcome = parse_command(payload)
    check(outcome)


@settings(max_examples=examples(1000), deadline=None)
@given(json_values)
def test_command_parser_on_any_json(value: Any) -> None:
    check(parse_command(json.dumps(value).encode()))


SECTIONS = ["mqtt", "cloud", "camera", "detector", "quality", "selection", "crop", "enroll", "commands", "logging"]
config_docs = st.dictionaries(
    st.sampled_from([*SECTIONS, "device_id", "state_dir", "secrets", "unknown"]),
    json_values | st.dictionaries(st.text(max_size=20), json_values, max_size=5),
    max_size=6,
)


@settings(max_examples=examples(2000), deadline=None)
@given(config_docs, st.dictionaries(st.sampled_from(["TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "FACEAGENT_MQTT_PASSWORD"]),
                                    st.text(max_size=20), max_size=3))
def test_config_loader_only_raises_config_errors(raw: dict[str, Any], env: dict[str, str]) -> None:
    try:
        config = config_from_mapping(raw, env)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and isinstance(r, str) for p, r in exc.problems)
        return
    assert isinstance(config, Config)
