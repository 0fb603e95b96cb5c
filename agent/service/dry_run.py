"""A dry run: everything an enrollment does but write at the cloud — and what the cloud says about the person.

The person (and, for `create_person`, its group) is read at the cloud as a real run would read it; the
captures are made and cropped; nothing is sent that changes anything. The result has status `dry_run`,
`would_send` and `person_at_cloud`, and as `error` whatever a real run would have met.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.iai.client import IaiClient
from agent.iai.models import PersonInfo
from agent.service.protocol import EnrollCommand
from agent.service.result import DryRunResult, ResultError, Timings


def person_at_cloud(client: IaiClient, command: EnrollCommand, info: PersonInfo | None, free_slots: int) -> dict[str, Any]:
    """What the cloud holds for the command's person (read-only calls); a missing `create_person` group raises its CloudError."""
    if info is not None:
        groups = client.get_person_group_info(command.person_id).group_ids
        return {"exists": True, "person_name": info.person_name, "face_ids": list(info.face_ids), "free_slots": free_slots,
                "groups": list(groups)}
    spec = command.create_person
    assert spec is not None  # a missing person without create_person raised PersonNotFound before
    members = client.get_person_list_num(spec.group_id)  # GroupIdNotExist: the real run's CreatePerson would fail the same way
    return {"exists": False, "would_create_in_group": spec.group_id, "group_persons": members.person_num, "free_slots": free_slots}


def write_crops(out_dir: Path, person_id: str, jpegs: list[bytes]) -> tuple[str, ...]:
    """The crops a real run would upload, as files (`faceagent enroll --dry-run --out-dir`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, jpeg in enumerate(jpegs):
        path = out_dir / f"crop-{person_id}-{index}.jpg"
        path.write_bytes(jpeg)
        paths.append(str(path))
    return tuple(paths)


def dry_run_result(base: DryRunResult, *, would_send: int, person: dict[str, Any], shortfall: ResultError | None, timings: Timings,
                   captures: tuple[dict[str, Any], ...], previews: tuple[str, ...] | None, crops: tuple[str, ...] | None) -> DryRunResult:
    """The result of a dry run that got as far as the upload."""
    return replace(base, would_send=would_send, person_at_cloud=person, error=shortfall,
                   captures=captures, preview_jpeg_b64=previews, crops=crops, timings=timings)
