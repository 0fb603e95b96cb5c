"""`faceagent snapshot`: one frame from the configured camera, optionally annotated and judged."""

from __future__ import annotations

import argparse

from agent.cli.common import fail, format_verdict
from agent.errors import CameraUnavailable, ExitCode, ImageUnreadable


def cmd_snapshot(args: argparse.Namespace) -> int:
    from agent.camera.camera import build_source
    from agent.cli.common import load_config_or_exit
    from agent.images import image_path_problem, write_image

    problem = image_path_problem(args.out)  # before the camera is opened
    if problem is not None:
        return fail(f"--out {problem}", ExitCode.USAGE)
    config = load_config_or_exit(args)
    source = build_source(config.camera)
    try:
        with source:
            frame = source.read()
    except CameraUnavailable as exc:
        return fail(exc.message, ExitCode.FAILED)
    image = frame.image
    verdict = None
    if args.annotate:
        from agent.vision.annotate import annotate
        from agent.vision.detector import detector_from_config
        from agent.vision.selection import analyze

        analysis = analyze(detector_from_config(config.detector), image, config.quality, config.selection, frame.detect_image)
        image = annotate(image, analysis, config.crop)
        verdict = format_verdict(analysis.verdict, analysis.detail, [r.as_json() for r in analysis.faces])
    try:
        write_image(args.out, image, config.crop.jpeg_quality)
    except ImageUnreadable as exc:
        return fail(exc.message, ExitCode.FAILED)
    print(f"{args.out}: {image.shape[1]}x{image.shape[0]} from {source.description}")
    if verdict is not None:
        print(verdict)
    return ExitCode.OK
