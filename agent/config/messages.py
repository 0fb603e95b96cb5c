"""What the config loader says about a value of the wrong type: what YAML read, what the key expects, and the fix.

YAML decides types by spelling: `5` is an integer, `2018-03-01` a date, `"2"` a string. The config is strict
(a quoted number is refused, not guessed), except for the few values whose obvious spelling YAML reads as
another type; `yaml_spelling` accepts those.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

# What a field of each type expects, by pydantic error type.
EXPECTED = {
    "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "text", "dict_type": "a mapping of keys", "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys", "list_type": "a list",
    "path_type": "a file path",
}


def yaml_spelling(value: Any, choices: Sequence[str]) -> Any:
    """The choice `value` obviously means (`5` for "5", the date 2018-03-01, `info` for "INFO"), else `value` itself."""
    if isinstance(value, bool):
        return value
    if isinstance(value, datetime.date):
        text = value.isoformat()
    elif isinstance(value, (int, str)):
        text = str(value)
    else:
        return value
    return next((choice for choice in choices if choice.lower() == text.lower()), value)


def describe_yaml(value: Any) -> str:
    """What YAML read, as an operator would say it: `the string "2"`, `the integer 5`, `the date 2018-03-01`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f'the string "{value[:60]}"'
    kinds = ((int, "the integer"), (float, "the number"), (datetime.date, "the date"))
    kind = next((name for cls, name in kinds if isinstance(value, cls)), None)
    if kind is not None:
        return f"{kind} {value}"
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def parses_as(text: str, error_type: str) -> bool:
    """Whether quoted `text` would have been valid unquoted (so the fix is to drop the quotes)."""
    if error_type == "bool_type":
        return text.strip().lower() in ("true", "false")
    convert = {"int_type": int, "float_type": float}.get(error_type)
    if convert is None:
        return False
    try:
        convert(text)
    except ValueError:
        return False
    return True


def type_reason(error: Any) -> str | None:
    """"expected X; read Y" for one pydantic type error (None for other errors), with the fix when it is obvious."""
    value = error.get("input")
    read = describe_yaml(value)
    if error["type"] == "literal_error":
        allowed = str(error.get("ctx", {}).get("expected", "")).replace("'", '"')
        return f"expected {allowed}; read {read}"
    expected = EXPECTED.get(error["type"])
    if expected is None:
        return None
    hint = ""
    if isinstance(value, str) and parses_as(value, error["type"]):
        hint = " (write it without quotes)"
    elif expected == "text" and isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
        hint = " (put it in quotes: YAML read it as a number or date)"
    return f"expected {expected}; read {read}{hint}"
