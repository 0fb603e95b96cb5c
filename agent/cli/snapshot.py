"""`faceagent snapshot`: one frame from the configured camera, optionally annotated."""

from __future__ import annotations

import argparse
import sys

from agent.errors import CameraUnavailable, ExitCode, ImageUnreadable


def cmd_snapshot(args: argparse.Namespace) -> int:
    from agent.camera.camera import build_source
    from agent.cli.common import load_config_or_exit
    from agent.images import write_image

    config = load_config_or_exit(args)
    source = build_source(config.camera)
    try:
        with source:
            frame = source.read()
    except CameraUnavailable as exc:
        print(f"faceagent: {exc.message}", file=sys.stderr)
        return ExitCode.FAILED
    image = frame.image
    if args.annotate:
        from agent.vision.annotate import annotate
        from agent.vision.detector import detector_from_config
        from agent.vision.selection import analyze

        analysis = analyze(detector_from_config(config.detector), image, config.quality, config.selection, frame.detect_image)
        image = annotate(image, analysis)
    try:
        write_image(args.out, image, config.crop.jpeg_quality)
    except (ImageUnreadable, OSError) as exc:
        print(f"faceagent: cannot write {args.out}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"{args.out}: {image.shape[1]}x{image.shape[0]} from {source.description}")
    return ExitCode.OK
