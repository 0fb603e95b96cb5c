"""The emulated account's data: groups, persons, faces; saved to a JSON file after every change when asked.

Also the two kinds of bookkeeping that span requests: persons kept busy by a call that has not been applied yet
(FailedOperation.ConflictOperation for anyone else), and the count of late applications still pending (so a test
can wait until every scheduled change has landed).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError
from agent.devtools.emulator.images import FacePrint, similarity


def now_ms() -> int:
    """Milliseconds since the Unix epoch, as the SDK's CreationTimestamp/UpdateTimestamp fields."""
    return int(time.time() * 1000)


def new_face_id() -> str:
    """A FaceId shaped like IAI's (a 19-digit decimal string)."""
    return str(random.randint(10**18, 10**19 - 1))


@dataclass
class Person:
    name: str
    gender: int
    groups: list[str]
    faces: list[str] = field(default_factory=list)
    descriptions: dict[str, list[str]] = field(default_factory=dict)  # GroupId -> PersonExDescriptions
    creation_timestamp: int = 0


@dataclass
class FaceRecord:
    person: str
    print: FacePrint | None
    foreign: bool = False  # added by another writer (fault other_writer_next), never by a test's request

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person, "print": self.print.to_json() if self.print else None, "foreign": self.foreign}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceRecord:
        return cls(data["person"], FacePrint.from_json(data["print"]) if data.get("print") else None, bool(data.get("foreign")))


class EmulatorState:
    """Groups, persons and faces. `lock` guards them; every change ends with `save()`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.groups: dict[str, dict[str, Any]] = {}
        self.persons: dict[str, Person] = {}
        self.faces: dict[str, FaceRecord] = {}
        self.lock = threading.RLock()
        self._busy: set[str] = set()
        self._pending = 0
        self._settled = threading.Condition(self.lock)
        if path and path.exists():
            data = json.loads(path.read_text())
            self.groups = data.get("groups", {})
            self.persons = {pid: Person(**p) for pid, p in data.get("persons", {}).items()}
            self.faces = {fid: FaceRecord.from_json(f) for fid, f in data.get("face_records", {}).items()}

    def save(self) -> None:
        if not self.path:
            return
        data = {**self.snapshot(), "face_records": {fid: f.to_json() for fid, f in self.faces.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def snapshot(self) -> dict[str, Any]:
        """What GET /_control/state shows: groups, persons (FaceIds in order), foreign FaceIds, pending count."""
        with self.lock:
            return {
                "groups": {gid: dict(g) for gid, g in self.groups.items()},
                "persons": {pid: asdict(p) for pid, p in self.persons.items()},
                "foreign_faces": [fid for fid, f in self.faces.items() if f.foreign],
                "pending": self._pending,
            }

    # --- lookups -----------------------------------------------------------------------------------

    def person(self, person_id: str) -> Person:
        person = self.persons.get(person_id)
        if person is None:
            raise ApiError("InvalidParameterValue.PersonIdNotExist", f"The person {person_id} does not exist.")
        return person

    def group(self, group_id: str) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None:
            raise ApiError("InvalidParameterValue.GroupIdNotExist", f"The group {group_id} does not exist.")
        return group

    def model_version(self, person: Person) -> str:
        """A person's FaceModelVersion: that of the groups it belongs to."""
        for gid in person.groups:
            if gid in self.groups:
                return str(self.groups[gid].get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION))
        return limits.DEFAULT_FACE_MODEL_VERSION

    def best_face(self, person_id: str, face_print: FacePrint) -> tuple[float, str | None]:
        """(score, FaceId) of the person's face most similar to `face_print`; (0, None) when it has none to compare."""
        best: tuple[float, str | None] = (0.0, None)
        with self.lock:
            for face_id in self.persons[person_id].faces:
                record = self.faces.get(face_id)
                if record is not None and record.print is not None:
                    score = similarity(face_print, record.print)
                    if score > best[0]:
                        best = (score, face_id)
        return best

    def touch_groups(self, group_ids: list[str]) -> None:
        """A group's UpdateTimestamp follows every change to its persons or faces."""
        stamp = now_ms()
        for gid in group_ids:
            if gid in self.groups:
                self.groups[gid]["UpdateTimestamp"] = stamp

    # --- changes -----------------------------------------------------------------------------------

    def add_face(self, person_id: str, face_print: FacePrint | None, foreign: bool = False) -> str:
        with self.lock:
            face_id = new_face_id()
            self.persons[person_id].faces.append(face_id)
            self.faces[face_id] = FaceRecord(person_id, face_print, foreign)
            self.touch_groups(self.persons[person_id].groups)
            return face_id

    def remove_faces(self, person_id: str, face_ids: list[str]) -> None:
        with self.lock:
            person = self.persons[person_id]
            person.faces = [f for f in person.faces if f not in face_ids]
            for face_id in face_ids:
                self.faces.pop(face_id, None)
            self.touch_groups(person.groups)

    # --- busy persons --------------------------------------------------------------------------------

    @contextmanager
    def claiming(self, person_id: str) -> Iterator[None]:
        """Mark a person busy for a call being prepared; released at once if the preparation fails.

        On success the claim stays until the server calls `release` after the change was applied.
        """
        with self.lock:
            if person_id in self._busy:
                raise ApiError("FailedOperation.ConflictOperation", f"Another operation on person {person_id} is in progress.")
            self._busy.add(person_id)
        try:
            yield
        except BaseException:
            self.release(person_id)
            raise

    def release(self, person_id: str | None) -> None:
        if person_id is not None:
            with self.lock:
                self._busy.discard(person_id)

    # --- late applications ---------------------------------------------------------------------------

    def begin_pending(self) -> None:
        with self.lock:
            self._pending += 1

    def end_pending(self) -> None:
        with self.lock:
            self._pending -= 1
            self._settled.notify_all()

    def wait_settled(self, timeout_s: float) -> int:
        """Block until no late application is pending (at most `timeout_s`); the number still pending."""
        with self.lock:
            self._settled.wait_for(lambda: self._pending == 0, timeout=timeout_s)
            return self._pending
