"""Thread `intake`: every message on a command topic becomes a stored job or an answer — then it is acknowledged.

The order of checks is the security model (docs/mqtt-api.md, "Security"): retained messages are
ignored; with signatures required, the signature is verified before the id is looked up or stored,
so unsigned traffic can neither read stored results nor claim ids (its rejection goes only to the
device's own result topic and is not stored); then the schema, the device's policy, and the id store,
where a duplicate is detected and answered with the stored result (`replayed: true`).
A command that cannot be stored (the disk is full) is answered `storage_unavailable` and acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from typing import Any

from agent.config import Config
from agent.errors import ErrorCode
from agent.service.home_assistant import enroll_command as home_assistant_command
from agent.service.home_assistant import enroll_command_ids, status_topic
from agent.service.mqtt import Incoming, MqttLink
from agent.service.protocol import (
    DeleteCommand,
    EnrollCommand,
    Rejection,
    SnapshotRequest,
    Topics,
    command_ids,
    correlation_text,
    decode_payload,
    printable,
    response_topic_problem,
    signature_problem,
    validate_command,
    validate_delete,
    validate_snapshot,
)
from agent.service.replay import SignedReplays
from agent.service.result import RejectedResult, Result, ResultError, Status, progress_payload
from agent.service.signals import Signals
from agent.service.store import Job, JobKind, JobState, JobStore, Message, Outcome, StoreError
from agent.service.telemetry import Count, Counters

log = logging.getLogger(__name__)

UNAUTHENTICATED_LOG_EVERY_S = 60.0  # strangers' messages are logged at most this often (with a running count)


class RateLimitedLog:
    """Allows one log line per `every_s`: a flood of the same event must not flood the journal."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._next = 0.0

    def allow(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True


def payload_digest(payload: bytes) -> str:
    """How an answer without an id names the message it answers: the SHA-256 of its payload, as received."""
    return hashlib.sha256(payload).hexdigest()


def result_messages(result: Result, topic: str, response_topic: str | None, correlation: bytes | None) -> list[Message]:
    """The result on the device's result `topic`, and on the command's reply address when it has one.

    The copy on the reply address carries the correlation value in its payload too (as text), so it is seen
    where Correlation Data is not: under MQTT 3.1.1 and across bridges.
    """
    body = result.to_json()
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    messages: list[Message] = [(topic, payload, None)]
    if response_topic and response_topic != topic:
        text = correlation_text(correlation)
        reply = payload if text is None else json.dumps({**body, "correlation": text}, ensure_ascii=False).encode("utf-8")
        messages.append((response_topic, reply, correlation))
    return messages


class Intake:
    def __init__(self, *, config: Config, store: JobStore, link: MqttLink, incoming: queue.Queue[Incoming], counters: Counters,
                 snapshots: queue.Queue[SnapshotRequest], signals: Signals) -> None:
        self.config = config
        self.topics = Topics(config.base_topic)
        self.store = store
        self.link = link
        self.incoming = incoming
        self.counters = counters
        self._job_added = signals.job_added
        self._result_stored = signals.result_stored
        self.snapshots = snapshots
        self._home_assistant_online = signals.announce
        self.ha_status = status_topic(config) if config.home_assistant.discovery else None
        self.key = config.secrets.command_key.get_secret_value().encode() if config.secrets.command_key else None
        self.accepting = threading.Event()
        self.stopping = threading.Event()
        self._last_store_error = ""
        self._unauthenticated_log = RateLimitedLog(UNAUTHENTICATED_LOG_EVERY_S)
        self._snapshot_full_log = RateLimitedLog(UNAUTHENTICATED_LOG_EVERY_S)
        self._retained_log = RateLimitedLog(UNAUTHENTICATED_LOG_EVERY_S)
        self._internal_log = RateLimitedLog(UNAUTHENTICATED_LOG_EVERY_S)
        self._signed_snapshots = SignedReplays(config.state_dir / "signed-requests.sqlite3", config.commands.max_clock_skew_s)

    def stop(self) -> None:
        self.stopping.set()
        self._signed_snapshots.close()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                message = self.incoming.get(timeout=1.0)
            except queue.Empty:
                continue
            if not self.accepting.is_set():
                continue  # stopping: not acknowledged, so the broker delivers it again in the next session
            try:
                self.handle(message)
            except StoreError as exc:
                self._storage_failed(message, exc)
            except Exception:
                self.counters.inc(Count.INTERNAL_ERRORS)
                if self._internal_log.allow():  # a message that trips a bug may come in a flood
                    log.exception("unexpected error handling a message on %s (%d so far); answered and acknowledged",
                                  printable(message.topic), self.counters.get(Count.INTERNAL_ERRORS))
                self._internal_error(message)
            self.link.ack(message)

    # --- one message -------------------------------------------------------------------------------------

    def kind_of(self, topic: str) -> str:
        """What a command topic carries: `snapshot`, `delete` or `enroll`."""
        return {self.topics.snapshot: "snapshot", self.topics.delete: "delete"}.get(topic, "enroll")

    def handle(self, message: Incoming) -> None:
        if message.topic == self.ha_status:  # Home Assistant started: it wants the discovery configs again
            if message.payload == b"online":
                self._home_assistant_online()
            return
        if message.retain:
            self.counters.inc(Count.IGNORED_RETAINED)
            if self._retained_log.allow():
                log.warning("ignoring a retained message on %s: commands must not be retained (%d ignored so far)",
                            printable(message.topic), self.counters.get(Count.IGNORED_RETAINED))
            return
        kind = self.kind_of(message.topic)
        if kind != "snapshot":
            self.counters.inc(Count.RECEIVED)
        data = self._from_home_assistant(message) if message.topic == self.topics.ha_enroll else decode_payload(message.payload)
        verified = self._must_verify(data)
        if verified:
            why = data.message if isinstance(data, Rejection) else signature_problem(
                data, self.key, self.config.device_id, self.config.commands.max_clock_skew_s)
            if why is not None:
                self._refuse_unauthenticated(data, why, kind, message.payload)
                return
        asked_reply_to, correlation = message.requested_reply(data)
        reply_to = asked_reply_to if asked_reply_to and self._response_topic_problem(asked_reply_to) is None else None
        if isinstance(data, Rejection):
            self._reject(data, kind, reply_to, correlation, store=False, payload=message.payload)
            return
        if kind == "snapshot":
            request = validate_snapshot(data)
            if isinstance(request, SnapshotRequest) and verified and not self._signed_snapshots.first_time(str(data["sig"]), data["ts"]):
                request = Rejection(request.id, None, "rejected", ErrorCode.INVALID_COMMAND,
                                    "sig: this signed snapshot request was already answered: a signed request is answered once")
            if isinstance(request, SnapshotRequest):
                self._queue_snapshot(request)
            else:
                self._reject(request, kind, None, None, store=False, payload=message.payload)
            return
        if asked_reply_to and reply_to is None:  # answered on the device's own result topic only
            problem = self._response_topic_problem(asked_reply_to) or "response topic refused"
            problem = f"reply_to: {problem}" if isinstance(data.get("reply_to"), str) else problem
            self._reject(Rejection(*command_ids(data), "rejected", ErrorCode.INVALID_COMMAND, problem), kind, None, None, store=False)
            return
        command = validate_delete(data) if kind == "delete" else validate_command(data)
        if not isinstance(command, Rejection):
            command = self._check_policy(command)
        if isinstance(command, Rejection):
            self._reject(command, kind, reply_to, correlation, store=command.id is not None)
            return
        expiry = time.time() + message.expiry_s if message.expiry_s else None
        self._accept(command, kind, reply_to, correlation, expiry)

    def _from_home_assistant(self, message: Incoming) -> dict[str, Any] | Rejection:
        """A person id typed into Home Assistant's text entity, as an enroll command — only where that is allowed.

        Every delivery of one message gets one id (home_assistant.enroll_command_ids): a redelivery (DUP) takes the
        last id of its chain already stored, so it is replayed; a first delivery the first one not stored.
        """
        if not self.config.home_assistant.allow_enroll or self.config.commands.require_signature:
            return Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND,
                             "enrolling from Home Assistant is off on this device (home_assistant.allow_enroll)")
        chain = enroll_command_ids(message.payload, message.mid)
        used = [i for i in chain if self.store.get(i) is not None]
        if message.dup and used:
            return home_assistant_command(message.payload, command_id=used[-1])
        fresh = [i for i in chain if i not in used]
        return home_assistant_command(message.payload, command_id=fresh[0] if fresh else None)

    def _must_verify(self, data: dict[str, Any] | Rejection) -> bool:
        """Signatures are checked when required, and whenever a device with a key receives a signed command."""
        return self.config.commands.require_signature or (self.key is not None and isinstance(data, dict) and "sig" in data)

    def _refuse_unauthenticated(self, data: dict[str, Any] | Rejection, why: str, kind: str, payload: bytes) -> None:
        """Answered on the device's own topic only, never stored: the id stays free for the real operator.

        The answer carries no `id` (the claimed one is named in the message): whoever follows the result topic
        by id sees one result per real command, whatever strangers publish. Its `payload_sha256` lets the sender,
        and only the sender, recognise it as the answer to what it published.
        """
        self.counters.inc(Count.UNAUTHENTICATED)
        command_id = command_ids(data)[0] if isinstance(data, dict) else None
        if self._unauthenticated_log.allow():
            log.warning("refused an unauthenticated %s message%s: %s (%d refused so far)", kind,
                        f" claiming id {command_id}" if command_id else "", why, self.counters.get(Count.UNAUTHENTICATED))
        claimed = f" (command id {command_id!r} not taken)" if command_id else ""
        self._reject(Rejection(None, None, "rejected", ErrorCode.INVALID_COMMAND, why + claimed), kind, None, None, store=False,
                     quiet=True, payload=payload)

    def _response_topic_problem(self, topic: str) -> str | None:
        return response_topic_problem(topic, self.config.mqtt.topic_prefix, self.config.home_assistant.discovery_prefix)

    def _check_policy(self, command: EnrollCommand | DeleteCommand) -> EnrollCommand | DeleteCommand | Rejection:
        floor = self.config.commands.min_face_match_threshold
        threshold = command.face_match_threshold if isinstance(command, EnrollCommand) else None
        if threshold is not None and threshold < floor:
            return Rejection(command.id, command.person_id, "rejected", ErrorCode.INVALID_COMMAND,
                             f"face_match_threshold: must be >= {floor:g} on this device (policy)")
        if command.device_id is not None and command.device_id != self.config.device_id:
            return Rejection(command.id, command.person_id, "rejected", ErrorCode.INVALID_COMMAND,
                             f"device_id: the command is for device {command.device_id}, not this one")
        return command

    # --- answers -----------------------------------------------------------------------------------------

    def answer_topic(self, kind: str) -> str:
        return self.topics.snapshot_result if kind == "snapshot" else self.topics.result_for(kind)

    def _reject(self, rejection: Rejection, kind: str, reply_to: str | None, correlation: bytes | None, *, store: bool,
                quiet: bool = False, payload: bytes | None = None) -> None:
        """Answer a command that will not run. `quiet`: a stranger's message — not logged, and published without
        touching the disk (a flood of them must neither fill the log nor wear the SD card). An answer without an id
        carries the SHA-256 of the `payload` it answers."""
        if store and rejection.id is not None and self._replay_if_known(rejection.id, kind, reply_to, correlation):
            return
        self.counters.inc(Count.EXPIRED if rejection.status == "expired" else Count.REJECTED)
        status = Status.EXPIRED if rejection.status == "expired" else Status.REJECTED
        result = RejectedResult.of(rejection.id, self.config.device_id, rejection.person_id,
                                 ResultError.of(rejection.code, rejection.message), status,
                                 payload_sha256=payload_digest(payload) if rejection.id is None and payload is not None else None)
        messages = result_messages(result, self.answer_topic(kind), reply_to, correlation)
        if quiet:
            for topic, body, _ in messages:
                self.link.publish(topic, body, qos=1)
            return
        log.info("%s command %s %s: %s", kind, rejection.id, rejection.status, rejection.message)
        if store and rejection.id is not None:
            self.store.store_final({"id": rejection.id, "person_id": rejection.person_id}, result.to_json(), messages, reply_to, correlation,
                                   kind=JobKind(kind))
        else:
            self.store.enqueue(messages)
        self._result_stored()

    def _replay_if_known(self, job_id: str, kind: str, reply_to: str | None, correlation: bytes | None) -> bool:
        job = self.store.get(job_id)
        if job is None:
            return False
        self._duplicate(job, kind, reply_to, correlation)
        return True

    def _duplicate(self, job: Job, kind: str, reply_to: str | None, correlation: bytes | None) -> None:
        """A command id seen before: its stored result again (`replayed`), or "in progress" — never run twice."""
        if job.kind != kind:  # one id store: an id names one command, whatever its kind
            self.counters.inc(Count.REJECTED)
            used_by = "an enroll" if job.kind is JobKind.ENROLL else "a delete"
            result = RejectedResult.of(job.id, self.config.device_id, job.person_id, ResultError.of(
                ErrorCode.INVALID_COMMAND, f"id: {job.id} was already used by {used_by} command on this device: use a new id"))
            self.store.enqueue(result_messages(result, self.answer_topic(kind), reply_to, correlation))
            self._result_stored()
            return
        if job.result is None:
            log.info("command %s is already %s: acknowledged, not run twice", job.id, job.state.value)
            self.counters.inc(Count.DUPLICATES_IN_PROGRESS)
            if kind == "enroll":
                self._progress(job.id, {JobState.QUEUED: "queued", JobState.UPLOADING: "uploading"}.get(job.state, "capturing"),
                               "already in progress: not run twice", reply_to, correlation)
            return
        self.counters.inc(Count.REPLAYED)
        self.store.enqueue(result_messages(Result.from_json(job.result).replay(), self.answer_topic(kind), reply_to, correlation))
        self._result_stored()

    def _accept(self, command: EnrollCommand | DeleteCommand, kind: str, reply_to: str | None, correlation: bytes | None,
                mqtt_expiry: float | None) -> None:
        expiries = [t for t in (command.expires_at, mqtt_expiry) if t is not None]
        submitted = self.store.submit(command.model_dump(mode="json", exclude_none=True), queue_size=self.config.enroll.queue_size,
                                      expires_at=min(expiries) if expiries else None, response_topic=reply_to, correlation=correlation,
                                      kind=JobKind(kind))
        if submitted.outcome is Outcome.DUPLICATE:
            self._duplicate(submitted.job, kind, reply_to, correlation)
        elif submitted.outcome is Outcome.QUEUE_FULL:
            self.counters.inc(Count.QUEUE_FULL)
            result = RejectedResult.of(command.id, self.config.device_id, command.person_id, ResultError.of(
                ErrorCode.QUEUE_FULL, f"{self.config.enroll.queue_size} commands are already waiting: send it again later"))
            self.store.enqueue(result_messages(result, self.answer_topic(kind), reply_to, correlation))
            self._result_stored()
        else:
            if kind == "enroll":
                ahead = self.store.depth() - 1
                self._progress(command.id, "queued", "nothing ahead of it" if ahead <= 0 else f"{ahead} command(s) ahead of it",
                               reply_to, correlation)
            self._job_added()

    def _queue_snapshot(self, request: SnapshotRequest) -> None:
        try:
            self.snapshots.put_nowait(request)
            self._job_added()
        except queue.Full:  # answered, but not logged each time nor stored: a flood of requests must not reach the disk
            if self._snapshot_full_log.allow():
                log.warning("snapshot request refused: %d already waiting", self.snapshots.maxsize)
            self._reject(Rejection(request.id, None, "rejected", ErrorCode.QUEUE_FULL,
                                   f"{self.snapshots.maxsize} snapshot requests are already waiting: ask again later"),
                         "snapshot", None, None, store=False, quiet=True)

    def _progress(self, job_id: str, state: str, detail: str, reply_to: str | None, correlation: bytes | None) -> None:
        payload = json.dumps(progress_payload(job_id, state, detail))
        self.link.publish(self.topics.progress, payload)
        if reply_to:
            self.link.publish(reply_to, payload, correlation=correlation)

    def _internal_error(self, message: Incoming) -> None:
        """The safety net: a message that tripped a bug still gets its one answer (best effort, not stored)."""
        try:  # not authenticated when signatures are required: no id is echoed, as for any stranger's message
            self._answer_unstored(message, ErrorCode.INTERNAL, "the device could not handle this message (an internal error, "
                                  "logged): it was not run", echo_ids=not self.config.commands.require_signature)
        except Exception:  # the answer is a courtesy; the message is acknowledged regardless
            log.debug("could not answer a message that caused an internal error", exc_info=True)

    def _answer_unstored(self, message: Incoming, code: ErrorCode, text: str, echo_ids: bool = True) -> None:
        """Answer a message at once, without the store: its well-formed ids echoed, else the digest of its payload."""
        data = decode_payload(message.payload)
        command_id, person_id = command_ids(data) if echo_ids and isinstance(data, dict) else (None, None)
        result = RejectedResult.of(command_id, self.config.device_id, person_id, ResultError.of(code, text),
                                 payload_sha256=payload_digest(message.payload) if command_id is None else None)
        self.link.publish(self.answer_topic(self.kind_of(message.topic)), json.dumps(result.to_json()), qos=1)

    def _storage_failed(self, message: Incoming, exc: StoreError) -> None:
        """The command cannot be stored: answer it now (not durably) so the sender knows, and say why once."""
        self.counters.inc(Count.STORE_ERRORS)
        if exc.message != self._last_store_error:
            log.error("command not stored: %s", exc.message)
            self._last_store_error = exc.message
        self._answer_unstored(message, ErrorCode.STORAGE_UNAVAILABLE,
                              f"the device cannot store commands ({exc.message.rsplit(': ', 1)[-1]}): send it again later")
