"""Render docs/configuration.md from the config schema: `python -m agent.config_reference > docs/configuration.md`.

A test checks the committed file equals this output, so the reference never drifts from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from agent.config import Config

HEADER = """# Configuration reference

Every key of `/etc/faceagent/agent.yaml` (override the path with `--config` or `$FACEAGENT_CONFIG`). Unknown keys
and wrong types are errors; `faceagent check-config` lists them all with their dotted path and exits 78.
[`config/agent.example.yaml`](../config/agent.example.yaml) holds the same keys with their defaults.
Secrets are never configured here: see the README's *Configuration* section (credentials directory, environment).
This file is generated: `python -m agent.config_reference > docs/configuration.md`.
"""
BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
FACTORY_DEFAULTS = {"device_id": "the hostname", "state_dir": "`$STATE_DIRECTORY`, else `/var/lib/faceagent`"}


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(f"`{v}`" for v in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def render() -> str:
    lines = [HEADER]

    def section(model: type[BaseModel], prefix: str, title: str) -> None:
        rows, nested = [], []
        for name, field in model.model_fields.items():
            if name == "secrets":
                continue
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append((annotation, f"{prefix}{name}."))
                continue
            bounds = [f"{BOUNDS[k]} {getattr(m, k)}" for m in field.metadata for k in BOUNDS if getattr(m, k, None) is not None]
            kind = type_name(annotation) + (f" ({', '.join(bounds)})" if bounds else "")
            if field.default_factory is not None:
                default = FACTORY_DEFAULTS.get(name, "")
            else:
                default = "`null`" if field.default is None else f"`{field.default}`"
            rows.append(f"| `{prefix}{name}` | {kind} | {default} | {field.description or ''} |")
        if rows:
            lines.extend([f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for model_cls, sub in nested:
            section(model_cls, sub, f"`{sub[:-1]}`")

    section(Config, "", "Top level")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
