"""Render docs/configuration.md from the config schema: `python -m agent.config_reference > docs/configuration.md`.

A test checks the committed file equals this output, so the reference never drifts from the code.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
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

    def section(model: type[BaseModel], prefix: str, title: str, skip: str = "secrets") -> None:
        rows: list[str] = []
        nested: list[Callable[[], None]] = []  # the sections below this one, in field order
        for name, field in model.model_fields.items():
            if name == skip:
                continue
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append(functools.partial(section, annotation, f"{prefix}{name}.", f"`{prefix}{name}`"))
                continue
            if field.discriminator:  # one model per kind, picked by the discriminator key
                nested.append(functools.partial(union, typing.get_args(annotation), f"{prefix}{name}.", str(field.discriminator)))
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
        for render_nested in nested:
            render_nested()

    def union(kinds: tuple[type[BaseModel], ...], prefix: str, key: str) -> None:
        tags = [typing.get_args(kind.model_fields[key].annotation)[0] for kind in kinds]
        lines.extend([f"## `{prefix[:-1]}`", "", f"`{prefix}{key}` ({' / '.join(f'`{t}`' for t in tags)}, default `{tags[0]}`) "
                      "picks one of the tables below. A file may also carry the keys of the other kinds, as "
                      "config/agent.example.yaml does: they are checked as their kind checks them, and have no effect.", ""])
        for tag, kind in sorted(zip(tags, kinds), key=lambda pair: pair[0] != tags[0]):
            section(kind, prefix, f"`{prefix}{key}: {tag}`", skip=key)

    section(Config, "", "Top level")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
