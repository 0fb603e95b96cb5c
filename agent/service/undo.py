"""Undo an enrollment: delete the faces an earlier enroll command added (its stored result lists them), or given FaceIds.

Run by the worker, which owns every cloud write, one command at a time with the enrollments. The person is
read first: faces it no longer has are reported as `not_found_face_ids`; IAI keeps at least one face per
person, so a command that would take the last one is refused whole (`last_face`) — nothing is deleted.
DeleteFace is idempotent at the cloud, so a lost answer is simply asked again; its SucFaceIds say what went.
But the answer that arrives may be a retry's ("0 deleted": the first attempt, whose answer was lost, deleted them),
or none may arrive: whatever the answer did not confirm is read back from the person, waiting up to
`read_timeout_s + settle_s` for a delete the cloud is still applying, so a result never calls a deleted face kept.
"""

from __future__ import annotations

import logging
import time

from agent.config import Config
from agent.errors import ErrorCode, FaceAgentError
from agent.iai.client import IaiClient
from agent.iai.errors import CloudError, CloudUnavailable
from agent.service.protocol import DeleteCommand
from agent.service.result import DeleteResult, ResultError, Status
from agent.service.store import JobKind, JobStore

log = logging.getLogger(__name__)


class Undo:
    def __init__(self, config: Config, *, client: IaiClient | None, store: JobStore) -> None:
        self.config = config
        self.client = client
        self.store = store

    def run(self, command: DeleteCommand) -> DeleteResult:
        """Delete the faces; the command's result (`deleted_face_ids`, `not_found_face_ids`)."""
        try:
            wanted = list(command.face_ids) if command.face_ids is not None else self.enrolled_faces(command)
            return self._delete(command, wanted)
        except FaceAgentError as exc:
            log.warning("delete %s for person %s failed: %s", command.id, command.person_id, exc.message)
            return DeleteResult(command.id, self.config.device_id, command.person_id, Status.FAILED, deleted_face_ids=(), not_found_face_ids=(),
                          error=ResultError.from_exception(exc), cloud_request_id=exc.request_id if isinstance(exc, CloudError) else None)

    def enrolled_faces(self, command: DeleteCommand) -> list[str]:
        """The faces the enrollment `command.enrollment_id` added, from its stored result; `FaceAgentError` says why not."""
        enrollment = command.enrollment_id
        job = self.store.get(enrollment) if enrollment is not None else None
        if job is None or job.kind is not JobKind.ENROLL:
            raise FaceAgentError(f"enrollment_id: no enrollment {enrollment} is stored on this device (results are kept "
                                 f"{self.config.enroll.result_retention_days} days): give the face_ids instead", code=ErrorCode.INVALID_COMMAND)
        if job.result is None:
            raise FaceAgentError(f"enrollment_id: enrollment {enrollment} has not finished yet: send the delete after its result",
                                 code=ErrorCode.INVALID_COMMAND)
        if job.result.get("person_id") != command.person_id:
            raise FaceAgentError(f"enrollment_id: enrollment {enrollment} was for person {job.result.get('person_id')}, "
                                 f"not {command.person_id}", code=ErrorCode.INVALID_COMMAND)
        faces = [str(f) for f in job.result.get("face_ids") or []]
        if not faces:
            candidates = job.result.get("candidate_face_ids")
            hint = (f"it ended {job.result.get('status')} with candidate faces {', '.join(candidates)}: check the person, then "
                    "delete them by face_ids") if candidates else f"it ended {job.result.get('status')}: there is nothing to undo"
            raise FaceAgentError(f"enrollment_id: enrollment {enrollment} added no face this device can name ({hint})",
                                 code=ErrorCode.INVALID_COMMAND)
        return faces

    def _delete(self, command: DeleteCommand, wanted: list[str]) -> DeleteResult:
        if self.client is None:
            raise FaceAgentError("no cloud client on this device", code=ErrorCode.INTERNAL)
        with self.client.person_lock(command.person_id):
            held = self.client.get_person_base_info(command.person_id).face_ids
            present = [f for f in wanted if f in held]
            gone = tuple(f for f in wanted if f not in held)
            if not present:
                log.info("delete %s: none of the faces is on person %s any more", command.id, command.person_id)
                return DeleteResult(command.id, self.config.device_id, command.person_id, Status.SUCCEEDED, deleted_face_ids=(),
                              not_found_face_ids=gone)
            if set(present) >= set(held):
                return DeleteResult(command.id, self.config.device_id, command.person_id, Status.FAILED, deleted_face_ids=(),
                              not_found_face_ids=gone, error=ResultError.of(ErrorCode.LAST_FACE, (
                                  f"person {command.person_id} would keep no face and IAI keeps at least one: enroll a face of the "
                                  "right person first, then delete these; or delete the person in the IAI console")))
            try:
                answer = self.client.delete_face(command.person_id, present)
                deleted, request_id = tuple(f for f in present if f in answer.suc_face_ids), answer.request_id
            except CloudError as exc:
                if not (exc.ambiguous or isinstance(exc, CloudUnavailable)):  # lost, conflicting, out of attempts: maybe applied
                    raise  # a refusal: nothing was deleted
                deleted, request_id = (), exc.request_id
            left = [f for f in present if f not in deleted]
            if left:
                try:
                    still = self._still_held(command.person_id, left)
                except FaceAgentError as exc:
                    return DeleteResult(command.id, self.config.device_id, command.person_id, Status.UNKNOWN, deleted_face_ids=deleted,
                                  not_found_face_ids=gone, cloud_request_id=request_id, error=ResultError.of(ErrorCode.OUTCOME_UNKNOWN, (
                                      f"the cloud did not confirm deleting {', '.join(sorted(left))} and person {command.person_id} "
                                      f"could not be read back ({exc.message}): look at the person before sending the delete again")))
                deleted += tuple(f for f in left if f not in still)
                left = still
        log.info("delete %s: %d face(s) of person %s deleted (RequestId %s)", command.id, len(deleted), command.person_id, request_id)
        if not left:
            return DeleteResult(command.id, self.config.device_id, command.person_id, Status.SUCCEEDED, deleted_face_ids=deleted,
                          not_found_face_ids=gone, cloud_request_id=request_id)
        return DeleteResult(command.id, self.config.device_id, command.person_id, Status.PARTIAL if deleted else Status.FAILED,
                      deleted_face_ids=deleted, not_found_face_ids=gone, cloud_request_id=request_id,
                      error=ResultError.of(ErrorCode.CLOUD_REJECTED, f"the cloud kept face(s) {', '.join(sorted(left))}: send the delete again"))

    def _still_held(self, person_id: str, faces: list[str]) -> list[str]:
        """Which of `faces` the person still has, read until they are gone or the settle window has passed."""
        assert self.client is not None
        deadline = time.monotonic() + self.config.cloud.read_timeout_s + self.config.cloud.settle_s
        pause = 0.25
        while True:
            held = self.client.get_person_base_info(person_id).face_ids
            still = [f for f in faces if f in held]
            if not still or time.monotonic() + pause > deadline:
                return still
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
