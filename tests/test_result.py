"""Results on the wire: one type per kind, and the JSON generated from it is what docs/mqtt-api.md documents.

The expected objects are what the single flat result type wrote before the kinds existed, key order included.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agent.errors import ErrorCode
from agent.service.dry_run import dry_run_result
from agent.service.result import DeleteResult, DryRunResult, EnrollResult, RejectedResult, Result, ResultError, Status, Timings

ERROR = ResultError.of(ErrorCode.CLOUD_REJECTED, "x", "FailedOperation.X")
TIMINGS = Timings(1, 2, 3, 4, 10)
COMMON = {"device_id": "dev", "person_id": "p1"}
DONE = {"timings_ms": {"queue": 1000, "capture": 2, "detect": 3, "upload": 4, "total": 2500}, "replayed": False,
        "finished_at": "1970-01-01T00:16:42.500Z"}
ERROR_JSON = {"code": "cloud_rejected", "message": "x", "retryable": False, "cloud_code": "FailedOperation.X"}
NOTHING_ADDED = {"faces_added": 0, "face_ids": [], "ret_codes": []}

CASES: list[tuple[str, Result, dict[str, Any]]] = [
    ("enroll", EnrollResult("c1", "dev", "p1", Status.SUCCEEDED, face_ids=("f1", "f2"), ret_codes=(0, 0), timings=TIMINGS,
                            captures=({"score": 0.9},), cloud_request_id="r1", face_model_version="3.0", reconciled=True,
                            person_created=True, preview_jpeg_b64=("AAA",)),
     {"id": "c1", **COMMON, "status": "succeeded", "faces_added": 2, "face_ids": ["f1", "f2"], "ret_codes": [0, 0], **DONE,
      "captures": [{"score": 0.9}], "cloud_request_id": "r1", "face_model_version": "3.0", "reconciled": True, "person_created": True,
      "preview_jpeg_b64": ["AAA"]}),
    ("enroll unknown", EnrollResult("c1", "dev", "p1", Status.UNKNOWN, timings=TIMINGS, error=ERROR, candidate_face_ids=("f9",)),
     {"id": "c1", **COMMON, "status": "unknown", **NOTHING_ADDED, **DONE, "error": ERROR_JSON, "candidate_face_ids": ["f9"]}),
    ("dry run", dry_run_result(DryRunResult("c2", "dev", "p1"), would_send=2, person={"exists": True}, shortfall=None, timings=TIMINGS,
                               captures=({"score": 1},), previews=("BBB",), crops=("/tmp/a.jpg",)),
     {"id": "c2", **COMMON, "status": "dry_run", **NOTHING_ADDED, **DONE, "captures": [{"score": 1}], "preview_jpeg_b64": ["BBB"],
      "dry_run": True, "crops": ["/tmp/a.jpg"], "would_send": 2, "person_at_cloud": {"exists": True}}),
    ("delete", DeleteResult("d1", "dev", "p1", Status.SUCCEEDED, deleted_face_ids=("f1",), not_found_face_ids=("f2",), cloud_request_id="r4"),
     {"id": "d1", **COMMON, "status": "succeeded", **NOTHING_ADDED, **DONE, "cloud_request_id": "r4", "deleted_face_ids": ["f1"],
      "not_found_face_ids": ["f2"]}),
    ("delete refused", DeleteResult("d1", "dev", "p1", Status.FAILED, deleted_face_ids=(), not_found_face_ids=(), error=ERROR),
     {"id": "d1", **COMMON, "status": "failed", **NOTHING_ADDED, **DONE, "error": ERROR_JSON, "deleted_face_ids": [],
      "not_found_face_ids": []}),
    ("rejected without id", RejectedResult.of(None, "dev", None, ERROR, payload_sha256="abc"),
     {"id": None, "device_id": "dev", "person_id": None, "status": "rejected", **NOTHING_ADDED, **DONE, "error": ERROR_JSON,
      "payload_sha256": "abc"}),
    ("expired", RejectedResult.of("c4", "dev", "p1", ERROR, Status.EXPIRED),
     {"id": "c4", **COMMON, "status": "expired", **NOTHING_ADDED, **DONE, "error": ERROR_JSON}),
]


@pytest.mark.parametrize(("kind", "result", "wire"), CASES, ids=[case[0] for case in CASES])
def test_each_kind_writes_the_documented_json(kind: str, result: Result, wire: dict[str, Any]) -> None:
    written = replace(result, timings=TIMINGS).completed(1000.0, 1001.0, 1002.5).to_json()
    assert written == wire and list(written) == list(wire)


@pytest.mark.parametrize(("kind", "result", "wire"), CASES, ids=[case[0] for case in CASES])
def test_a_stored_result_replays_as_its_kind_without_previews(kind: str, result: Result, wire: dict[str, Any]) -> None:
    stored = replace(result, timings=TIMINGS).completed(1000.0, 1001.0, 1002.5).stored()
    replayed = Result.from_json(stored.to_json())
    assert type(replayed) is type(result)
    expected = {**{k: v for k, v in wire.items() if k != "preview_jpeg_b64"}, "replayed": True}
    assert replayed.replay().to_json() == expected
