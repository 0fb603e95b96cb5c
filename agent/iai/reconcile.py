"""What did a lost CreateFace or CreatePerson do? Read the person back, then attribute new faces by content.

An attempt whose answer was lost (timeout, dropped connection, server error) may land late: IAI can
still be processing it when the client gives up, and a new face takes effect within ~1 s, at most 5 s
(docs/iai.md). So the person is polled until `window` (the read timeout plus that settle time) has
passed since sending, not read once.

That window is measured on the monotonic clock, never the wall clock: a Pi has no real-time clock, boots
with a stale time and NTP steps it later, and a step during the window would end it early ("nothing
landed" while the face is still coming). CLOCK_MONOTONIC holds across a restart of the process within one
boot (the attempt records the boot id); after a reboot the time since sending cannot be measured, so the
whole window is waited from the settlement's start — an upper bound, never a guess.

A face that appeared meanwhile is ours only if the cloud itself says so: SearchFaces with the exact
image we sent finds its own face at a near-perfect score, while a face another device or the console
added scores clearly lower. A set difference alone would claim a stranger's face as ours.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.iai.client import MAX_SEARCH_GROUPS, IaiClient
from agent.iai.errors import CloudError, CloudUnavailable, PersonNotFound

log = logging.getLogger("agent.iai")

# SearchFaces score at which a face is the image we sent: the identical image scores ~100 against its
# own face; another photo of the same person scores clearly lower (90 is IAI's 1-in-10,000 false-match level).
SAME_IMAGE_MIN_SCORE = 97.0
MAX_CANDIDATES = 100  # SearchFaces' maximum: the person must be among them for its best face to be known


@dataclass(frozen=True)
class Attempt:
    """One non-idempotent request that may have landed, as persisted just before it is sent."""

    action: str  # "CreateFace" or "CreatePerson"
    person_id: str
    images: tuple[bytes, ...]
    known_face_ids: tuple[str, ...] | None  # the person's faces just before the attempt; None: it did not exist
    sent_at: float  # wall-clock seconds (service time as the device knows it): for people and the give-up, not the window
    group_id: str | None = None  # CreatePerson's group (where SearchFaces looks)
    boot: str = ""  # the boot it was sent in; "" unknown
    sent_mono: float | None = None  # time.monotonic() when sent: comparable within that boot only

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "person_id": self.person_id, "images": [base64.b64encode(i).decode() for i in self.images],
                "known_face_ids": None if self.known_face_ids is None else list(self.known_face_ids), "sent_at": self.sent_at,
                "group_id": self.group_id, "boot": self.boot, "sent_mono": self.sent_mono}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        known = data.get("known_face_ids")
        mono = data.get("sent_mono")
        return cls(str(data["action"]), str(data["person_id"]), tuple(base64.b64decode(i) for i in data["images"]),
                   None if known is None else tuple(str(f) for f in known), float(data["sent_at"]), data.get("group_id"),
                   str(data.get("boot") or ""), None if mono is None else float(mono))


def boot_id() -> str:
    """This boot's id (Linux); "" where there is none, which makes every saved attempt's age unmeasurable."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Settled:
    """What the attempt did, as far as the cloud shows it."""

    ours: tuple[str, ...]  # FaceIds this attempt created, proven by content
    person_face_ids: tuple[str, ...]  # every FaceId of the person now
    strangers: tuple[str, ...] = ()  # faces that appeared meanwhile and are not this attempt's
    person_exists: bool = True
    attributable: bool = True  # False: new faces appeared but SearchFaces could not tell whose they are
    complete: bool = False  # every image of the attempt is accounted for
    waited_s: float = 0.0

    @property
    def candidates(self) -> tuple[str, ...]:
        """Faces that may be ours when attribution was impossible."""
        return () if self.attributable else self.strangers


@dataclass
class Reconciler:
    """Settles attempts against the cloud. `window_s` counts from sending, on the monotonic clock (`elapsed`)."""

    client: IaiClient
    window_s: float
    poll_s: float = 1.0
    min_score: float = SAME_IMAGE_MIN_SCORE
    clock: Callable[[], float] = time.monotonic  # never the wall clock: see the module's docstring
    sleep: Callable[[float], None] = time.sleep
    boot: str = field(default_factory=boot_id)
    _groups: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def stamp(self) -> tuple[str, float]:
        """(boot, monotonic now) for an attempt about to be sent."""
        return self.boot, self.clock()

    def elapsed(self, attempt: Attempt) -> float | None:
        """Seconds since `attempt` was sent, or None when this boot cannot measure it (sent in another boot, or saved
        by a version that kept no monotonic time)."""
        if attempt.sent_mono is None or not attempt.boot or attempt.boot != self.boot:
            return None
        return max(0.0, self.clock() - attempt.sent_mono)

    def settle(self, attempt: Attempt) -> Settled:
        """Poll until every image is accounted for or the window has passed; raise `CloudError` when the cloud cannot be read."""
        elapsed = self.elapsed(attempt)
        started = self.clock()
        deadline = started + self.window_s - (elapsed if elapsed is not None else 0.0)  # unmeasurable: the whole window
        self._groups.clear()  # a person's groups can change between two settlements
        while True:
            final = self.clock() >= deadline
            found = self._look(attempt)
            if found.complete or final:
                log.info("%s for %s settled after %.1f s: %d face(s) ours, %d other new", attempt.action, attempt.person_id,
                         self.clock() - started, len(found.ours), len(found.strangers))
                return Settled(found.ours, found.person_face_ids, found.strangers, found.person_exists, found.attributable,
                               found.complete, self.clock() - started)
            self.sleep(max(0.0, min(self.poll_s, deadline - self.clock())))

    def _look(self, attempt: Attempt) -> Settled:
        try:
            faces = tuple(self.client.get_person_base_info(attempt.person_id).face_ids)
        except PersonNotFound:
            return Settled((), (), person_exists=False)
        if attempt.known_face_ids is None:  # CreatePerson: the person exists now, created by us or by someone else
            ours, attributable = self._attribute(attempt, faces)
            return Settled(ours, faces, tuple(f for f in faces if f not in ours), True, attributable, complete=True)
        new = tuple(f for f in faces if f not in attempt.known_face_ids)
        if not new:
            return Settled((), faces)
        ours, attributable = self._attribute(attempt, new)
        return Settled(ours, faces, tuple(f for f in new if f not in ours), True, attributable,
                       complete=attributable and len(ours) == len(attempt.images))

    def _attribute(self, attempt: Attempt, new: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
        """(the new faces that are this attempt's images, whether the cloud could tell at all)."""
        try:
            groups = self._person_groups(attempt)
            if not groups:
                return (), False
            ours: list[str] = []
            for image in attempt.images:
                face_id, conclusive = self._match(groups, image, attempt.person_id, new)
                if not conclusive:
                    return (), False
                if face_id is not None and face_id not in ours:
                    ours.append(face_id)
            return tuple(ours), True
        except CloudUnavailable:
            raise  # try again later
        except CloudError as exc:  # not permitted, not supported: it will not get better by waiting
            log.warning("cannot attribute new faces of %s by content: %s", attempt.person_id, exc.message)
            return (), False

    def _person_groups(self, attempt: Attempt) -> list[str]:
        if attempt.group_id:
            return [attempt.group_id]
        if attempt.person_id not in self._groups:
            self._groups[attempt.person_id] = self.client.get_person_group_info(attempt.person_id).group_ids
        return self._groups[attempt.person_id]

    def _match(self, groups: list[str], image: bytes, person_id: str, new: tuple[str, ...]) -> tuple[str | None, bool]:
        """(the new FaceId that is `image`, or None: the image did not land; conclusive).

        Not conclusive when SearchFaces does not list the person at all (many persons hold look-alike faces), or
        when the person's best match is an older face that is the very same image (a tie SearchFaces hides).
        """
        for start in range(0, len(groups), MAX_SEARCH_GROUPS):
            for result in self.client.search_faces(groups[start : start + MAX_SEARCH_GROUPS], image, max_person_num=MAX_CANDIDATES):
                for candidate in result.candidates:
                    if candidate.person_id != person_id:
                        continue
                    if candidate.score < self.min_score:
                        return None, True  # had the image landed, its own face would score ~100: it did not
                    if candidate.face_id in new:
                        return candidate.face_id, True
                    break  # an older face of the person is the very same image: SearchFaces cannot tell which one is new
        return None, False
