"""`faceagent enroll`: one enrollment from files or the camera, without MQTT; prints the result object."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from agent.cli.common import fail, format_result, load_config_or_exit, result_ok
from agent.config import require_cloud_secrets
from agent.errors import ConfigError, ExitCode, ImageUnreadable


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.app import build_cloud
    from agent.camera.base import Frame
    from agent.camera.camera import Camera, build_source
    from agent.iai.upload import NoJournal, ReconcileDeferred
    from agent.images import read_image
    from agent.service.enroller import Enroller
    from agent.service.protocol import EnrollCommand, parse_command
    from agent.vision.detector import detector_from_config

    if (args.person_name is not None or args.unique_person_control is not None) and not args.create_person:
        return fail("--person-name and --unique-person-control apply to the person --create-person creates: "
                    "give --create-person GROUP_ID too", ExitCode.USAGE)
    config = load_config_or_exit(args)
    received_at = time.time()
    try:
        require_cloud_secrets(config, args.credentials.directory)  # a dry run reads the person at the cloud too
    except ConfigError as exc:
        return fail(exc.message, ExitCode.CONFIG)
    raw: dict[str, Any] = {"id": f"cli-{uuid.uuid4().hex[:12]}", "person_id": args.person_id, "faces": args.faces, "dry_run": args.dry_run}
    if args.create_person:
        raw["create_person"] = {"group_id": args.create_person, "person_name": args.person_name or args.person_id}
        if args.unique_person_control is not None:
            raw["create_person"]["unique_person_control"] = args.unique_person_control
    parsed = parse_command(json.dumps(raw).encode())  # the device's own checks: a bad group id is named as a command field
    if not isinstance(parsed, EnrollCommand):
        return fail(parsed.message, ExitCode.USAGE)
    command = parsed
    frames = None
    camera = None
    if args.image:
        try:
            gap = config.enroll.min_capture_gap_s + 0.01
            # Files have no capture time: each is its own moment, far enough apart to count as distinct captures.
            frames = [Frame(read_image(path), received_at + i * gap) for i, path in enumerate(args.image)]
        except ImageUnreadable as exc:
            return fail(exc.message, ExitCode.USAGE)
    else:
        camera = Camera(build_source(config.camera), config.camera.fps, None)
    # No journal: no later process would settle a lost answer; it is reported unknown below instead.
    client, uploader = build_cloud(config, NoJournal(), args.credentials.environ())
    try:
        enroller = Enroller(config, detector=detector_from_config(config.detector), camera=camera, client=client, uploader=uploader)
        try:
            result = enroller.run(command, frames=frames, crops_dir=args.out_dir if args.dry_run else None,
                                  progress=lambda state, detail: print(f"{state}: {detail}", file=sys.stderr))
        except ReconcileDeferred as exc:
            # No daemon will settle it later: say plainly that nobody knows yet.
            exc.progress.unknown, exc.progress.attempt = True, None
            result = enroller.upload_result(command, exc.progress, wanted=command.faces, remaining=command.faces,
                                            sent=exc.progress.images_total)
    finally:
        if camera is not None:
            camera.close()
        if client is not None:
            client.close()
    result = result.completed(received_at, received_at)
    data = result.to_json()
    print(json.dumps(data) if args.json else format_result(data))
    return ExitCode.OK if result_ok(data) else ExitCode.FAILED
