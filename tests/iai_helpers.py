"""Helpers to drive the emulator from tests: control calls, stats, and a client pointed at it."""

from __future__ import annotations

from typing import Any

import requests

from agent.iai.client import IaiClient
from agent.retry import RetryPolicy
from tests.conftest import EMU_ID, EMU_KEY


def control(server: Any, **update: Any) -> None:
    requests.post(server.base_url + "/_control", json=update, timeout=5).raise_for_status()


def stats(server: Any) -> dict[str, int]:
    return dict(requests.get(server.base_url + "/_control/stats", timeout=5).json())


def state(server: Any) -> dict[str, Any]:
    return dict(requests.get(server.base_url + "/_control/state", timeout=5).json())


def client_for(server: Any, *, key: str = EMU_KEY, attempts: int = 4, deadline: float = 10.0, read_timeout: float = 5.0, **kw: Any) -> IaiClient:
    return IaiClient.connect(
        server.base_url, EMU_ID, key, read_timeout_s=read_timeout, connect_timeout_s=2.0,
        policy=RetryPolicy(max_attempts=attempts, deadline_s=deadline, base_s=0.01, max_s=0.05), **kw,
    )


def seed_person(client: IaiClient, person_id: str, image: bytes, group: str = "staff") -> str | None:
    client.create_group(group, group.title())
    from agent.iai.models import CreatePersonRequest

    return client.create_person(CreatePersonRequest(group, f"Person {person_id}", person_id, image=image)).face_id
