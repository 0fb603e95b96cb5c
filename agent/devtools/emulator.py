"""`faceagent emulator`: a local emulator of the Tencent Cloud IAI API 3.0 (contract §5).

Serves CreateFace (2018-03-01 and 2020-03-03), CreatePerson, GetPersonBaseInfo, GetPersonGroupInfo, DeleteFace,
GetPersonListNum, GetGroupList and CreateGroup on loopback. It verifies TC3 signatures and the
5-minute timestamp window, enforces IAI's limits with the real error codes and per-image RetCodes
(no face is judged by the bundled detector), and injects faults on demand:

- flags: --latency-ms, --qps-limit, --error-rate, --http-500-rate, --drop-rate
- control endpoint (no signature, loopback only): POST /_control with any of
  {"latency_ms", "qps_limit", "error_rate", "http_500_rate", "drop_rate"} (persistent settings),
  {"fail_next": {"code": "InternalError", "count": 2, "action": "CreateFace"}},
  {"http_500_next": n}, {"drop_next": n}, {"apply_then_drop_next": n} (apply, then drop the response),
  {"delay_next": {"ms": 800, "count": 1, "action": "CreateFace"}} (answer late, after applying),
  {"outage": true|false} (every request answered HTTP 503), {"mismatch_next": {"<person>": n}} (-1604),
  {"low_quality_next": {"<person>": n}} (-1601), {"reset_stats": true};
  GET /_control/stats -> request counts per action and outcome; GET /_control/state -> groups and persons.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.iai.limits import (
    JPEG_MAX_LONG_SIDE,
    MAX_BODY_BYTES,
    MAX_FACES_PER_PERSON,
    MAX_IMAGE_B64_BYTES,
    MAX_IMAGES_PER_CALL,
    MIN_SHORT_SIDE,
    OTHER_MAX_LONG_SIDE,
    PERSON_ID_RE,
    PERSON_NAME_MAX,
)
from agent.iai.signing import parse_authorization, verify

log = logging.getLogger(__name__)

VERSIONS = {"2018-03-01", "2020-03-03"}
TIMESTAMP_WINDOW_S = 300
CONTENT_TYPES = {"application/json", "application/json; charset=utf-8"}


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Person:
    name: str
    gender: int
    groups: list[str]
    faces: list[str] = field(default_factory=list)


@dataclass
class Faults:
    latency_ms: float = 0.0
    qps_limit: float = 0.0
    error_rate: float = 0.0
    http_500_rate: float = 0.0
    drop_rate: float = 0.0
    outage: bool = False
    fail_next: list[dict[str, Any]] = field(default_factory=list)
    delay_next: list[dict[str, Any]] = field(default_factory=list)
    http_500_next: int = 0
    drop_next: int = 0
    apply_then_drop_next: int = 0
    mismatch_next: dict[str, int] = field(default_factory=dict)
    low_quality_next: dict[str, int] = field(default_factory=dict)


class FaceChecker:
    """-1101 "no face" judged by the bundled detector, loaded on first use and shared by every server."""

    _detector: Any = None
    _lock = threading.Lock()

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def largest_face(self, frame: Any) -> tuple[int, int, int, int] | None:
        if not self.enabled:
            h, w = frame.shape[:2]
            return (w // 4, h // 4, w // 2, h // 2)
        with self._lock:
            if FaceChecker._detector is None:
                from agent.vision.detector import FaceDetector

                FaceChecker._detector = FaceDetector(input_size=(320, 240), threads=1, score_threshold=0.7)
            faces = FaceChecker._detector.detect(frame)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.area)
        x, y, w, h = face.xywh()
        return (x, y, w, h)


class EmulatorState:
    """Groups, persons and faces; saved to a JSON file after every change when `path` is set."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.groups: dict[str, dict[str, Any]] = {}
        self.persons: dict[str, Person] = {}
        self.lock = threading.RLock()
        self.busy: set[str] = set()
        if path and path.exists():
            data = json.loads(path.read_text())
            self.groups = data.get("groups", {})
            self.persons = {pid: Person(**p) for pid, p in data.get("persons", {}).items()}

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self.path)

    def snapshot(self) -> dict[str, Any]:
        return {"groups": self.groups, "persons": {pid: vars(p) for pid, p in self.persons.items()}}


def _new_id() -> str:
    return str(random.randint(10**18, 10**19 - 1))


class Emulator:
    """The API logic, independent of HTTP so that it reads as a list of IAI's rules."""

    def __init__(self, secret_id: str, secret_key: str, state: EmulatorState, faults: Faults, faces: FaceChecker) -> None:
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.state = state
        self.faults = faults
        self.faces = faces
        self.stats: Counter[str] = Counter()
        self.recent: deque[float] = deque()
        self.lock = threading.Lock()

    # --- checks common to every request --------------------------------------------------------

    def authenticate(self, headers: dict[str, str], body: bytes) -> None:
        auth = headers.get("authorization", "")
        parsed = parse_authorization(auth)
        if parsed is None:
            raise ApiError("AuthFailure.InvalidAuthorization", "The Authorization header is not a valid TC3-HMAC-SHA256 header.")
        if parsed.secret_id != self.secret_id:
            raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct.")
        for required in ("content-type", "host"):
            if required not in parsed.signed_headers:
                raise ApiError("AuthFailure.SignatureFailure", f"The header {required} must be signed.")
        if headers.get("content-type", "").lower() not in CONTENT_TYPES:
            raise ApiError("InvalidParameter", "Content-Type must be application/json.")
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            raise ApiError("MissingParameter", "The X-TC-Timestamp header is missing or invalid.") from None
        now = int(time.time())
        if abs(now - timestamp) > TIMESTAMP_WINDOW_S:
            raise ApiError("AuthFailure.SignatureExpire",
                           f"The signature expired: request timestamp {timestamp}, server time {now}.")
        if not verify(parsed, self.secret_key, timestamp, headers, body):
            raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct.")

    def throttle(self) -> None:
        if self.faults.qps_limit <= 0:
            return
        now = time.monotonic()
        with self.lock:
            while self.recent and now - self.recent[0] > 1.0:
                self.recent.popleft()
            if len(self.recent) >= self.faults.qps_limit:
                raise ApiError("RequestLimitExceeded", f"Your current request times equals to `{len(self.recent)}` in a second.")
            self.recent.append(now)

    def injected_error(self, action: str) -> None:
        with self.lock:
            for rule in self.faults.fail_next:
                if rule.get("count", 0) > 0 and rule.get("action") in (None, action):
                    rule["count"] -= 1
                    raise ApiError(str(rule.get("code", "InternalError")), "injected by the emulator")
        if self.faults.error_rate and random.random() < self.faults.error_rate:
            raise ApiError("InternalError", "internal error (injected)")

    # --- actions -----------------------------------------------------------------------------------

    def dispatch(self, action: str, version: str, params: dict[str, Any]) -> dict[str, Any]:
        if version not in VERSIONS:
            raise ApiError("NoSuchVersion", f"The API version {version} does not exist.")
        handler = {
            "CreateFace": self.create_face, "CreatePerson": self.create_person, "GetPersonBaseInfo": self.get_person_base_info,
            "DeleteFace": self.delete_face, "GetPersonListNum": self.get_person_list_num, "GetGroupList": self.get_group_list,
            "CreateGroup": self.create_group, "GetPersonGroupInfo": self.get_person_group_info,
        }.get(action)
        if handler is None:
            raise ApiError("InvalidAction", f"The action {action} is not supported.")
        return handler(params)

    def _person(self, params: dict[str, Any]) -> tuple[str, Person]:
        person_id = self._person_id(params)
        person = self.state.persons.get(person_id)
        if person is None:
            raise ApiError("InvalidParameterValue.PersonIdNotExist", "The person does not exist.")
        return person_id, person

    @staticmethod
    def _person_id(params: dict[str, Any]) -> str:
        person_id = params.get("PersonId")
        if not person_id:
            raise ApiError("MissingParameter.ErrorParameterEmpty", "PersonId is required.")
        if not isinstance(person_id, str) or len(person_id.encode()) > 64:
            raise ApiError("InvalidParameterValue.PersonIdTooLong", "PersonId is too long.")
        if not PERSON_ID_RE.match(person_id):
            raise ApiError("InvalidParameterValue.PersonIdIllegal", "PersonId contains illegal characters.")
        return person_id

    def _image_ret_code(self, image: Any, person_id: str) -> tuple[int, tuple[int, int, int, int] | None]:
        """RetCode for one base64 image, and the largest face box when it is accepted."""
        from agent.images import decode_image, sniff_format

        if not isinstance(image, str):
            return -1102, None
        if len(image) > MAX_IMAGE_B64_BYTES:
            return -1109, None
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            return -1102, None
        fmt = sniff_format(data)
        if fmt in (None, "gif"):
            return -1102, None
        try:
            frame = decode_image(data)
        except Exception:
            return -1102, None
        h, w = frame.shape[:2]
        limit = JPEG_MAX_LONG_SIDE if fmt == "jpeg" else OTHER_MAX_LONG_SIDE
        if max(w, h) > limit or min(w, h) < MIN_SHORT_SIDE:
            return -1109, None
        box = self.faces.largest_face(frame)
        if box is None:
            return -1101, None
        with self.lock:  # the control endpoint updates these hooks from another thread
            for hook, code in ((self.faults.low_quality_next, -1601), (self.faults.mismatch_next, -1604)):
                if hook.get(person_id, 0) > 0:
                    hook[person_id] -= 1
                    return code, None
        return 0, box

    def create_face(self, params: dict[str, Any]) -> dict[str, Any]:
        person_id, person = self._person(params)
        images, urls = params.get("Images") or [], params.get("Urls") or []
        if urls:
            raise ApiError("FailedOperation.ImageDownloadError", "The emulator does not download image URLs.")
        if not images:
            raise ApiError("InvalidParameterValue.ImageEmpty", "No image was sent.")
        if len(images) > MAX_IMAGES_PER_CALL:
            raise ApiError("InvalidParameterValue.UploadFaceNumExceed", "At most 4 images per call.")
        with self.state.lock:
            if person_id in self.state.busy:
                raise ApiError("FailedOperation.ConflictOperation", "Another operation on this person is in progress.")
            self.state.busy.add(person_id)
        try:
            if len(person.faces) >= MAX_FACES_PER_PERSON:
                raise ApiError("InvalidParameterValue.PersonFaceNumExceed", "The person already has 5 faces.")
            ret_codes: list[int] = []
            ids: list[str] = []
            indexes: list[int] = []
            rects: list[dict[str, int]] = []
            for index, image in enumerate(images):
                code, box = self._image_ret_code(image, person_id)
                if code == 0 and len(person.faces) + len(ids) >= MAX_FACES_PER_PERSON:
                    code = -1  # the person is full: a service error for this image
                ret_codes.append(code)
                if code == 0 and box is not None:
                    ids.append(_new_id())
                    indexes.append(index)
                    rects.append({"X": box[0], "Y": box[1], "Width": box[2], "Height": box[3]})
            with self.state.lock:
                person.faces.extend(ids)
                self.state.save()
            return {"SucFaceNum": len(ids), "SucFaceIds": ids, "RetCode": ret_codes, "SucIndexes": indexes,
                    "SucFaceRects": rects, "FaceModelVersion": "3.0"}
        finally:
            with self.state.lock:
                self.state.busy.discard(person_id)

    def create_person(self, params: dict[str, Any]) -> dict[str, Any]:
        person_id = self._person_id(params)
        group_id = params.get("GroupId")
        name = params.get("PersonName")
        if not group_id:
            raise ApiError("MissingParameter.ErrorParameterEmpty", "GroupId is required.")
        if group_id not in self.state.groups:
            raise ApiError("InvalidParameterValue.GroupIdNotExist", "The group does not exist.")
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidParameterValue.PersonNameIllegal", "PersonName is required.")
        if len(name) > PERSON_NAME_MAX:
            raise ApiError("InvalidParameterValue.PersonNameTooLong", "PersonName is too long.")
        gender = params.get("Gender", 0)
        if gender not in (0, 1, 2):
            raise ApiError("InvalidParameterValue.PersonGenderIllegal", "Gender must be 0, 1 or 2.")
        if person_id in self.state.persons:
            raise ApiError("InvalidParameterValue.PersonIdAlreadyExist", "The person already exists.")
        face_id, rect = None, None
        image = params.get("Image")
        if image is not None:
            code, box = self._image_ret_code(image, person_id)
            if code == -1101:
                raise ApiError("InvalidParameterValue.NoFaceInPhoto", "No face in the image.")
            if code == -1109:
                raise ApiError("FailedOperation.ImageSizeExceed", "The image is too large or too small.")
            if code != 0 or box is None:
                raise ApiError("FailedOperation.ImageDecodeFailed", "The image could not be decoded.")
            face_id = _new_id()
            rect = {"X": box[0], "Y": box[1], "Width": box[2], "Height": box[3]}
        elif params.get("Url"):
            raise ApiError("FailedOperation.ImageDownloadError", "The emulator does not download image URLs.")
        with self.state.lock:
            self.state.persons[person_id] = Person(name, int(gender), [group_id], [face_id] if face_id else [])
            self.state.save()
        return {"FaceId": face_id, "FaceRect": rect, "SimilarPersonId": "", "FaceModelVersion": "3.0"}

    def get_person_base_info(self, params: dict[str, Any]) -> dict[str, Any]:
        _, person = self._person(params)
        return {"PersonName": person.name, "Gender": person.gender, "FaceIds": list(person.faces)}

    def get_person_group_info(self, params: dict[str, Any]) -> dict[str, Any]:
        _, person = self._person(params)
        return {"PersonGroupInfos": [{"GroupId": g, "PersonExDescriptions": []} for g in person.groups],
                "GroupNum": len(person.groups), "FaceModelVersion": "3.0"}

    def delete_face(self, params: dict[str, Any]) -> dict[str, Any]:
        _, person = self._person(params)
        wanted = [f for f in params.get("FaceIds") or [] if f in person.faces]
        if wanted and len(wanted) >= len(person.faces):
            raise ApiError("InvalidParameterValue.DeleteFaceNumExceed", "The last face of a person cannot be deleted.")
        with self.state.lock:
            person.faces = [f for f in person.faces if f not in wanted]
            self.state.save()
        return {"SucDeletedNum": len(wanted), "SucFaceIds": wanted}

    def get_person_list_num(self, params: dict[str, Any]) -> dict[str, Any]:
        group_id = params.get("GroupId")
        if group_id not in self.state.groups:
            raise ApiError("InvalidParameterValue.GroupIdNotExist", "The group does not exist.")
        members = [p for p in self.state.persons.values() if group_id in p.groups]
        return {"PersonNum": len(members), "FaceNum": sum(len(p.faces) for p in members)}

    def get_group_list(self, params: dict[str, Any]) -> dict[str, Any]:
        offset, limit = int(params.get("Offset", 0) or 0), int(params.get("Limit", 10) or 10)
        if limit > 1000:
            raise ApiError("InvalidParameterValue.LimitExceed", "Limit must be at most 1000.")
        groups = sorted(self.state.groups.items())
        page = [{"GroupId": gid, "GroupName": g["GroupName"], "FaceModelVersion": g.get("FaceModelVersion", "3.0"),
                 "GroupExDescriptions": [], "Tag": "", "CreationTimestamp": g.get("CreationTimestamp", 0)}
                for gid, g in groups[offset : offset + limit]]
        return {"GroupInfos": page, "GroupNum": len(groups)}

    def create_group(self, params: dict[str, Any]) -> dict[str, Any]:
        group_id, name = params.get("GroupId"), params.get("GroupName")
        if not group_id or not name:
            raise ApiError("MissingParameter.ErrorParameterEmpty", "GroupId and GroupName are required.")
        if not isinstance(group_id, str) or len(group_id) > 64 or not PERSON_ID_RE.match(group_id):
            raise ApiError("InvalidParameterValue.GroupIdIllegal", "GroupId contains illegal characters.")
        with self.state.lock:
            if group_id in self.state.groups:
                raise ApiError("InvalidParameterValue.GroupIdAlreadyExist", "The group already exists.")
            self.state.groups[group_id] = {"GroupName": name, "FaceModelVersion": params.get("FaceModelVersion", "3.0"),
                                           "CreationTimestamp": int(time.time() * 1000)}
            self.state.save()
        return {"FaceModelVersion": params.get("FaceModelVersion", "3.0")}

    # --- control -----------------------------------------------------------------------------------

    def control(self, update: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for key in ("latency_ms", "qps_limit", "error_rate", "http_500_rate", "drop_rate"):
                if key in update:
                    setattr(self.faults, key, float(update[key]))
            for key in ("http_500_next", "drop_next", "apply_then_drop_next"):
                if key in update:
                    setattr(self.faults, key, int(update[key]))
            if "outage" in update:
                self.faults.outage = bool(update["outage"])
            for key in ("fail_next", "delay_next"):
                if key in update:
                    rules = update[key]
                    getattr(self.faults, key).extend(rules if isinstance(rules, list) else [rules])
            for key in ("mismatch_next", "low_quality_next"):
                for person, count in (update.get(key) or {}).items():
                    getattr(self.faults, key)[person] = int(count)
            if update.get("reset_stats"):
                self.stats.clear()
        return {"ok": True}

    def delay_for(self, action: str) -> float:
        """Seconds to hold the answer of this request back (after applying it)."""
        with self.lock:
            for rule in self.faults.delay_next:
                if rule.get("count", 0) > 0 and rule.get("action") in (None, action):
                    rule["count"] -= 1
                    return float(rule.get("ms", 0)) / 1000
        return 0.0

    def take(self, name: str) -> bool:
        """Consume one count of a `*_next` fault."""
        with self.lock:
            value = getattr(self.faults, name)
            if value > 0:
                setattr(self.faults, name, value - 1)
                return True
        return False


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Close the connection without an answer (RST where possible)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def do_GET(self) -> None:
        emu = self.server.emulator
        if self.path == "/_control/stats":
            self._send_json(200, dict(emu.stats))
        elif self.path == "/_control/state":
            with emu.state.lock:
                self._send_json(200, emu.state.snapshot())
        else:
            self._send_json(404, {"error": "POST / for the API"})

    def do_POST(self) -> None:
        emu = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES + 1024 * 1024:
            self.rfile.read(length)
            self._answer_error(None, "RequestSizeLimitExceeded", "The request body is larger than 10 MB.")
            return
        body = self.rfile.read(length)
        if self.path.startswith("/_control"):
            try:
                self._send_json(200, emu.control(json.loads(body or b"{}")))
            except (ValueError, TypeError, AttributeError) as exc:
                self._send_json(400, {"error": str(exc)})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        action = headers.get("x-tc-action", "")
        emu.stats[f"requests.{action}"] += 1
        if emu.faults.latency_ms:
            time.sleep(emu.faults.latency_ms / 1000)
        if emu.faults.outage or emu.take("http_500_next") or (emu.faults.http_500_rate and random.random() < emu.faults.http_500_rate):
            emu.stats[f"http_5xx.{action}"] += 1
            self._send_json(503 if emu.faults.outage else 500, {"error": "injected server error"})
            return
        if emu.take("drop_next") or (emu.faults.drop_rate and random.random() < emu.faults.drop_rate):
            emu.stats[f"dropped.{action}"] += 1
            self._drop()
            return
        if len(body) > MAX_BODY_BYTES:
            self._answer_error(action, "RequestSizeLimitExceeded", "The request body is larger than 10 MB.")
            return
        try:
            emu.authenticate(headers, body)
            emu.throttle()
            emu.injected_error(action)
            try:
                params = json.loads(body)
                if not isinstance(params, dict):
                    raise ValueError
            except ValueError:
                raise ApiError("InvalidParameter", "The body is not a JSON object.") from None
            result = emu.dispatch(action, headers.get("x-tc-version", ""), params)
        except ApiError as exc:
            self._answer_error(action, exc.code, exc.message)
            return
        emu.stats[f"ok.{action}"] += 1
        delay = emu.delay_for(action)
        if delay:
            time.sleep(delay)
        if action == "CreateFace" and emu.take("apply_then_drop_next"):
            emu.stats[f"applied_then_dropped.{action}"] += 1
            self._drop()
            return
        result["RequestId"] = str(uuid.uuid4())
        self._send_json(200, {"Response": result})

    def _answer_error(self, action: str | None, code: str, message: str) -> None:
        self.server.emulator.stats[f"error.{action}.{code}"] += 1
        self._send_json(200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}})


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, Handler)
        self.emulator = emulator

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"


DEMO_SECRET_ID = "AKIDEMULATOR"  # noqa: S105
DEMO_SECRET_KEY = "emulator-secret-key"  # noqa: S105 - the emulator's well-known default, never a real key


def make_server(
    host: str = "127.0.0.1", port: int = 0, secret_id: str = DEMO_SECRET_ID, secret_key: str = DEMO_SECRET_KEY,
    state_file: Path | None = None, faults: Faults | None = None, face_check: bool = True,
) -> EmulatorServer:
    """Build a server (not yet serving); `serve_forever()` it in a thread or call `cmd_emulator`."""
    emulator = Emulator(secret_id, secret_key, EmulatorState(state_file), faults or Faults(), FaceChecker(face_check))
    return EmulatorServer((host, port), emulator)


def cmd_emulator(args: argparse.Namespace) -> int:
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("faceagent emulator: listening on a non-loopback address is refused", file=sys.stderr)
        return 2
    faults = Faults(latency_ms=args.latency_ms, qps_limit=args.qps_limit, error_rate=args.error_rate,
                    http_500_rate=args.http_500_rate, drop_rate=args.drop_rate)
    server = make_server(args.host, args.port, args.secret_id, args.secret_key, args.state, faults, not args.no_face_check)
    from agent.logs import SECRETS

    SECRETS.add(args.secret_key)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(server.base_url, flush=True)
    log.info("IAI emulator listening on %s (SecretId %s)", server.base_url, args.secret_id)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0
