"""`faceagent enroll`: one enrollment from files or the camera, without MQTT; prints the result object."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from agent.cli.common import format_result, load_config_or_exit
from agent.config import require_cloud_secrets
from agent.errors import ConfigError, ExitCode, ImageUnreadable


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.camera.base import Frame
    from agent.camera.camera import Camera, build_source
    from agent.iai.client import IaiClient
    from agent.images import read_image
    from agent.service.enroller import Enroller
    from agent.service.protocol import EnrollCommand, base_result, parse_command
    from agent.vision.detector import detector_from_config

    config = load_config_or_exit(args)
    if not args.dry_run:
        try:
            require_cloud_secrets(config)
        except ConfigError as exc:
            print(f"faceagent: {exc.message}", file=sys.stderr)
            return ExitCode.CONFIG
    parsed = parse_command(json.dumps({"id": f"cli-{uuid.uuid4().hex[:12]}", "person_id": args.person_id, "faces": args.faces}).encode())
    if not isinstance(parsed, EnrollCommand):
        print(f"faceagent: {parsed.message}", file=sys.stderr)
        return ExitCode.USAGE
    command = parsed
    frames = None
    camera = None
    if args.image:
        try:
            start = time.time()
            gap = config.enroll.min_capture_gap_s + 0.01
            # Files have no capture time: each is its own moment, far enough apart to count as distinct captures.
            frames = [Frame(read_image(path), start + i * gap) for i, path in enumerate(args.image)]
        except ImageUnreadable as exc:
            print(f"faceagent: {exc.message}", file=sys.stderr)
            return ExitCode.USAGE
    else:
        camera = Camera(build_source(config.camera), config.camera.fps, None)
    client = None if args.dry_run else IaiClient.from_config(config.cloud, config.secrets)
    try:
        enroller = Enroller(config, detector_from_config(config.detector), camera, client)
        outcome = enroller.run(command, frames=frames, dry_run_dir=args.out_dir if args.dry_run else None,
                               progress=lambda state, detail: print(f"{state}: {detail}", file=sys.stderr))
    finally:
        if camera is not None:
            camera.close()
        if client is not None:
            client.close()
    result = base_result(command.id, config.device_id, command.person_id)
    result.update(outcome.fields)
    result["timings_ms"] = {"queue": 0, **outcome.fields.get("timings_ms", {})}
    result["timings_ms"]["total"] = sum(result["timings_ms"].get(k, 0) for k in ("capture", "upload"))
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result))
    return ExitCode.OK if result["status"] == "succeeded" else ExitCode.FAILED
