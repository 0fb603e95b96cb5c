"""`faceagent ctl`: the operator side — enroll, delete (undo) and snapshot on a remote device over MQTT.

Each verb publishes one command and waits for its one answer (ctl_link.py connects, signs, subscribes first).
Every command expires when this tool stops waiting (`expires_at`, not MQTT's Message Expiry, so a device that
was down still answers `expired` when it comes back instead of enrolling whoever stands there then).
Exit codes: 0 succeeded (a dry run: nothing in the way; a snapshot: a frame arrived), 1 any other answer,
2 usage, 3 no answer before `--timeout` (the device may still run it: the same id fetches its result).
Before sending, the device's retained availability is read: one never seen on the broker, or offline, is refused
at once (exit 1) unless `--queue` (ctl_link.require_presence).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cli.common import fail, format_result, format_verdict, optional_config, result_ok
from agent.cli.ctl_link import DeviceLink, device_link, new_command_id, run_verb
from agent.errors import ExitCode


def cmd_ctl_enroll(args: argparse.Namespace) -> int:
    if (args.person_name is not None or args.unique_person_control is not None) and not args.create_person:
        return fail("--person-name and --unique-person-control apply to the person --create-person creates: "
                    "give --create-person GROUP_ID too", ExitCode.USAGE)
    if args.preview is not None and not args.preview.is_dir():
        return fail(f"--preview {args.preview}: not a folder (create it first)", ExitCode.USAGE)
    config = optional_config(args)
    return run_verb(lambda: _enroll(args, config))


def cmd_ctl_delete(args: argparse.Namespace) -> int:
    from agent.service.protocol import MAX_DELETE_FACES

    if args.face_ids is not None and len(args.face_ids) > MAX_DELETE_FACES:
        return fail(f"--face-id: at most {MAX_DELETE_FACES} faces per delete (a person has at most 5)", ExitCode.USAGE)
    config = optional_config(args)
    return run_verb(lambda: _delete(args, config))


def cmd_ctl_snapshot(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".jpg", ".jpeg"):
        return fail(f"--out {args.out}: the device sends a JPEG: name the file .jpg", ExitCode.USAGE)
    if not args.out.parent.is_dir():
        return fail(f"--out {args.out}: the folder {args.out.parent} does not exist", ExitCode.USAGE)
    config = optional_config(args)
    return run_verb(lambda: _snapshot(args, config))


# --- the verbs ------------------------------------------------------------------------------------------------


def _enroll(args: argparse.Namespace, config: Any) -> int:
    deadline = time.monotonic() + args.timeout
    command_id = new_command_id(args)
    command: dict[str, Any] = {"id": command_id, "person_id": args.person_id, "faces": args.faces}
    command["expires_at"] = int(time.time() + args.timeout) + 1
    if args.create_person:
        command["create_person"] = {"group_id": args.create_person, "person_name": args.person_name or args.person_id}
        if args.unique_person_control is not None:
            command["create_person"]["unique_person_control"] = args.unique_person_control
    if args.dry_run:
        command["dry_run"] = True
    if args.preview is not None:
        command["preview"] = True
    with device_link(args, config, lambda topics: [(topics.progress, 0), (topics.result, 1)], deadline) as link:
        link.send(link.topics.enroll, link.signed(command))
        print(f"sent {command_id} to {link.topics.enroll}", file=sys.stderr)
        result = _await(link, deadline, _answers(command_id, link), show_progress=True)
    if result is None:
        return fail(still_running(command_id, args.timeout, "enroll"), ExitCode.TIMEOUT)
    saved = _save_previews(args.preview, command_id, result.pop("preview_jpeg_b64", None)) if args.preview is not None else []
    print(json.dumps(result) if args.json else format_result(result))
    if args.preview is not None:
        print(f"  crops saved: {', '.join(saved)}" if saved else "  no crops to save: nothing was captured", file=sys.stderr)
    return ExitCode.OK if result_ok(result) else ExitCode.FAILED


def _delete(args: argparse.Namespace, config: Any) -> int:
    deadline = time.monotonic() + args.timeout
    command_id = new_command_id(args)
    command: dict[str, Any] = {"id": command_id, "person_id": args.person_id, "expires_at": int(time.time() + args.timeout) + 1}
    if args.enrollment:
        command["enrollment_id"] = args.enrollment
    else:
        command["face_ids"] = args.face_ids
    with device_link(args, config, lambda topics: [(topics.delete_result, 1)], deadline) as link:
        link.send(link.topics.delete, link.signed(command))
        print(f"sent {command_id} to {link.topics.delete}", file=sys.stderr)
        result = _await(link, deadline, _answers(command_id, link))
    if result is None:
        return fail(still_running(command_id, args.timeout, "delete"), ExitCode.TIMEOUT)
    print(json.dumps(result) if args.json else format_result(result))
    return ExitCode.OK if result.get("status") == "succeeded" else ExitCode.FAILED


def _snapshot(args: argparse.Namespace, config: Any) -> int:
    deadline = time.monotonic() + args.timeout
    request_id = new_command_id(args)
    with device_link(args, config, lambda topics: [(topics.snapshot_result, 1)], deadline) as link:
        link.send(link.topics.snapshot, link.signed({"id": request_id}, reply=False))
        print(f"sent {request_id} to {link.topics.snapshot}", file=sys.stderr)
        reply = _await(link, deadline, _answers(request_id, link, results_only=False))
    if reply is None:
        return fail(f"no snapshot from {args.device} within {args.timeout:g} s", ExitCode.TIMEOUT)
    if "jpeg_b64" not in reply:
        error = reply.get("error") or {}
        return fail(f"{args.device} sent no frame: {error.get('code')}: {error.get('message')}", ExitCode.FAILED)
    args.out.write_bytes(base64.b64decode(reply["jpeg_b64"]))
    print(f"{args.out}: annotated frame from {args.device}")
    print(format_verdict(str(reply.get("verdict")), str(reply.get("detail") or ""), list(reply.get("faces") or [])))
    return ExitCode.OK


def still_running(command_id: str, timeout: float, verb: str) -> str:
    """A timeout is not a failure: the device may be running the command. Sending a new id would run it twice."""
    return (f"no result for {command_id} within {timeout:g} s: the device may still run it. To fetch "
            f"its result, send the same command again with --id {command_id} (faceagent ctl {verb} ... --id {command_id}): "
            "a command id runs at most once, later copies get its result (or 'already in progress'); do not send it "
            "with a new id, or it may run twice")


# --- answers ------------------------------------------------------------------------------------------------------


def _answers(command_id: str, link: DeviceLink, results_only: bool = True) -> Callable[[dict[str, Any]], bool]:
    """Whether a message answers the command we sent: its id, or, for an answer without an id (a refused command),
    the SHA-256 of exactly the payload we published. Anyone can publish an id-less rejection on the device's
    topic; only our own payload has our digest."""
    def mine(data: dict[str, Any]) -> bool:
        if results_only and "status" not in data:
            return False
        if data.get("id") is None:
            return data.get("payload_sha256") is not None and data.get("payload_sha256") == link.last_digest
        return bool(data.get("id") == command_id)

    return mine


def _await(link: DeviceLink, deadline: float, is_answer: Callable[[dict[str, Any]], bool], show_progress: bool = False,
           ) -> dict[str, Any] | None:
    """The answer, printing progress as it comes (once: it may arrive on the device topic and our response topic)."""
    seen: set[str] = set()
    while (event := link.next_event(deadline)) is not None:
        data = event.data
        if show_progress and "state" in data and "status" not in data and data.get("id") in (None, link.last_id):
            line = f"[{data.get('state')}] {data.get('detail')}"
            if line not in seen:
                print(line, file=sys.stderr)
                seen.add(line)
        elif is_answer(data):
            return data
    return None


def _save_previews(folder: Path, command_id: str, previews: list[str] | None) -> list[str]:
    """The crops the device uploaded (small JPEGs of `enroll.preview_px`), as files in `folder`."""
    saved = []
    for index, encoded in enumerate(previews or []):
        path = folder / f"{command_id}-{index}.jpg"
        path.write_bytes(base64.b64decode(encoded))
        saved.append(str(path))
    return saved
