"""Exactly-once enrollment at the cloud: create the person if asked, add the faces, never twice.

Before every attempt the person is read (the snapshot a later diff needs) and the attempt is recorded in the
`Journal` the uploader was built with, which persists it before anything is sent. An attempt whose answer is
lost is settled by the `Reconciler`, never sent again. When the cloud cannot be read, `ReconcileDeferred` carries the saved
state out so the caller can settle it later (the daemon's worker, also after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.iai.client import IaiClient
from agent.iai.errors import CloudError, DuplicatePerson, OutcomeUnknown, PersonAlreadyExists, PersonNotFound
from agent.iai.models import CreateFaceRequest, CreatePersonRequest, b64
from agent.iai.reconcile import Attempt, Reconciler

log = logging.getLogger("agent.iai")


class ReconcileDeferred(Exception):
    """A lost answer could not be checked yet (the cloud is unreachable): settle `progress.attempt` later."""

    def __init__(self, progress: UploadProgress, cause: CloudError) -> None:
        super().__init__(cause.message)
        self.progress = progress
        self.cause = cause


@dataclass(frozen=True)
class NewPerson:
    """Create the person with the first image when it does not exist."""

    group_id: str
    person_name: str
    gender: int | None = None
    unique_person_control: int | None = None  # 1-4: IAI creates nothing when the face already belongs to someone


@dataclass
class UploadProgress:
    """Everything an upload needs to continue after a crash; saved before every attempt."""

    person_id: str
    pending: list[bytes]  # images not accounted for yet; an attempt in flight sends the first of them
    images_total: int = 0  # images this upload set out to send
    new_person: NewPerson | None = None
    face_match_threshold: float | None = None
    quality_control: int | None = None
    need_rotate_detection: bool | None = None
    attempt: Attempt | None = None  # the request that may be in flight
    face_ids: list[str] = field(default_factory=list)  # created by this upload so far
    ret_codes: list[int] = field(default_factory=list)  # per image whose answer arrived
    request_id: str | None = None
    face_model_version: str | None = None
    person_created: bool = False
    reconciled: bool = False
    unknown: bool = False  # an attempt's effect could not be established
    candidates: list[str] = field(default_factory=list)  # faces that may be ours when unknown

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("pending", "new_person", "attempt")}
        data["pending"] = [b64(image) for image in self.pending]
        data["new_person"] = vars(self.new_person) if self.new_person else None
        data["attempt"] = self.attempt.to_json() if self.attempt else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadProgress:
        import base64

        fields = dict(data)
        fields["pending"] = [base64.b64decode(i) for i in data.get("pending") or []]
        fields["new_person"] = NewPerson(**data["new_person"]) if data.get("new_person") else None
        fields["attempt"] = Attempt.from_json(data["attempt"]) if data.get("attempt") else None
        return cls(**fields)


class Journal(Protocol):
    """The write-ahead record of uploads: `record` returns only once `progress` is durable.

    The uploader records before every attempt it sends (with the attempt) and after settling one; `key`
    names the upload (the command id). The daemon's is the job store, so a restart finds what may be in flight.
    """

    def record(self, key: str, progress: UploadProgress) -> None: ...


class NoJournal:
    """For a one-shot upload no later process settles (`faceagent enroll`): a lost answer is reported unknown."""

    def record(self, key: str, progress: UploadProgress) -> None:
        pass


class Uploader:
    """Runs one `UploadProgress` to its end against the cloud, recording every attempt in `journal` first."""

    def __init__(self, client: IaiClient, reconciler: Reconciler, *, journal: Journal) -> None:
        self.client = client
        self.reconciler = reconciler
        self.journal = journal

    def run(self, progress: UploadProgress, key: str) -> UploadProgress:
        """Send what is pending (settling a saved attempt first); return the final progress. `key`: its journal entry.

        Raises `ReconcileDeferred` when a lost answer cannot be checked now, and the cloud's typed
        errors for answers that left nothing applied.
        """
        progress.images_total = progress.images_total or len(progress.pending)
        with self.client.person_lock(progress.person_id):
            if progress.attempt is not None:
                self._settle(progress, key)
            while progress.pending and not progress.unknown:
                if progress.new_person is not None:
                    self._create_person(progress, key)
                else:
                    self._create_faces(progress, key)
        return progress

    def _snapshot(self, progress: UploadProgress, action: str, images: list[bytes], key: str) -> Callable[[], None]:
        """The transport's `before_attempt` hook: read the person now, then record the attempt before it is sent."""

        def before_attempt() -> None:
            try:
                known: tuple[str, ...] | None = tuple(self.client.get_person_base_info(progress.person_id).face_ids)
            except PersonNotFound:
                if action == "CreateFace":
                    raise
                known = None
            if action == "CreatePerson" and known is not None:
                raise PersonAlreadyExists(f"person {progress.person_id} exists already", cloud_code="InvalidParameterValue.PersonIdAlreadyExist")
            group = progress.new_person.group_id if progress.new_person and action == "CreatePerson" else None
            boot, sent_mono = self.reconciler.stamp()
            progress.attempt = Attempt(action, progress.person_id, tuple(images), known, self.client.transport.now(), group, boot, sent_mono)
            self.journal.record(key, progress)

        return before_attempt

    def _create_person(self, progress: UploadProgress, key: str) -> None:
        spec = progress.new_person
        assert spec is not None
        image = progress.pending[0]
        request = CreatePersonRequest(spec.group_id, spec.person_name, progress.person_id, image=image, gender=spec.gender,
                                      unique_person_control=spec.unique_person_control, quality_control=progress.quality_control,
                                      need_rotate_detection=progress.need_rotate_detection)
        try:
            response = self.client.create_person(request, before_attempt=self._snapshot(progress, "CreatePerson", [image], key))
        except PersonAlreadyExists:
            log.info("person %s exists already (created by someone else): adding the faces to it", progress.person_id)
            progress.new_person, progress.attempt = None, None
            return
        except OutcomeUnknown:
            self._settle(progress, key)
            return
        if response.similar_person_id and not response.face_id:  # a success envelope that created nothing
            progress.attempt, progress.pending = None, []
            self.journal.record(key, progress)
            raise DuplicatePerson(progress.person_id, response.similar_person_id, response.request_id)
        if not self._confirmed(progress, [response.face_id] if response.face_id else []):
            self._settle(progress, key)
            return
        progress.attempt, progress.new_person = None, None
        progress.pending = progress.pending[1:]
        if response.face_id:
            progress.face_ids.append(response.face_id)
            progress.ret_codes.append(0)
        progress.person_created = True
        progress.request_id, progress.face_model_version = response.request_id, response.face_model_version

    def _create_faces(self, progress: UploadProgress, key: str) -> None:
        images = list(progress.pending)
        request = CreateFaceRequest(progress.person_id, images, face_match_threshold=progress.face_match_threshold,
                                    quality_control=progress.quality_control, need_rotate_detection=progress.need_rotate_detection)
        try:
            response = self.client.create_face(request, before_attempt=self._snapshot(progress, "CreateFace", images, key))
        except OutcomeUnknown:
            self._settle(progress, key)
            return
        if not self._confirmed(progress, response.suc_face_ids):
            self._settle(progress, key)
            return
        progress.attempt, progress.pending = None, []
        progress.face_ids.extend(response.suc_face_ids)
        progress.ret_codes.extend(response.ret_code)
        progress.request_id, progress.face_model_version = response.request_id, response.face_model_version

    def _confirmed(self, progress: UploadProgress, claimed: list[str]) -> bool:
        """Whether the FaceIds a success answer claims are on the person now and were not before the attempt.

        An older face of the person, or a stranger's, named in a success answer is never claimed: False sends the
        attempt to `_settle`. A person that cannot be read defers the job with its attempt saved.
        """
        attempt = progress.attempt
        if not claimed or attempt is None:
            return True
        try:
            faces = self.client.get_person_base_info(progress.person_id).face_ids
        except CloudError as exc:
            raise ReconcileDeferred(progress, exc) from None
        known = attempt.known_face_ids or ()
        if all(f in faces and f not in known for f in claimed):
            return True
        log.warning("%s for %s answered FaceIds %s that are not new faces of the person: reading it back", attempt.action,
                    progress.person_id, ",".join(claimed))
        return False

    def _settle(self, progress: UploadProgress, key: str) -> None:
        """Account for the attempt in flight (its images are the head of `pending`); it is never sent again."""
        attempt = progress.attempt
        assert attempt is not None
        try:
            settled = self.reconciler.settle(attempt)
        except CloudError as exc:
            raise ReconcileDeferred(progress, exc) from None
        progress.reconciled, progress.attempt = True, None
        rest = progress.pending[len(attempt.images):]
        if not settled.attributable:
            progress.unknown, progress.candidates, progress.pending = True, list(settled.candidates), []
        elif attempt.action == "CreateFace":
            progress.face_ids.extend(settled.ours)
            progress.pending = rest
        elif not settled.person_exists:
            progress.pending = []  # the person was not created: nothing more can be added by this command
        elif settled.ours:
            progress.face_ids.extend(settled.ours)
            progress.person_created, progress.new_person, progress.pending = True, None, rest
        else:
            log.info("person %s was created meanwhile by someone else: adding the faces to it", progress.person_id)
            progress.new_person = None  # our image did not land: it is added with CreateFace
        self.journal.record(key, progress)
