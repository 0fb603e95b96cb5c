"""`faceagent detect`: detector + quality + selection on image files; one JSON line per image with `--json`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.cli.common import optional_config
from agent.errors import ExitCode, ImageUnreadable


def cmd_detect(args: argparse.Namespace) -> int:
    from agent.errors import ModelError
    from agent.images import read_image, write_image
    from agent.vision.annotate import annotate
    from agent.vision.detector import detector_from_config
    from agent.vision.selection import analyze

    config = optional_config(args)
    try:
        detector = detector_from_config(config.detector)
    except ModelError as exc:
        print(f"faceagent: {exc.message}", file=sys.stderr)
        return ExitCode.CONFIG
    if args.annotate:
        try:
            args.annotate.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"faceagent: --annotate {args.annotate}: cannot create the folder ({exc.strerror or exc})", file=sys.stderr)
            return ExitCode.USAGE
    status = ExitCode.OK
    for name in args.images:
        try:
            frame = read_image(name)
        except ImageUnreadable as exc:
            print(f"faceagent: {exc.message}", file=sys.stderr)
            status = ExitCode.USAGE
            continue
        analysis = analyze(detector, frame, config.quality, config.selection)
        if args.json:
            line = {
                "image": name, "width": analysis.width, "height": analysis.height,
                "faces": [r.as_json() for r in analysis.faces], "best": analysis.best, "verdict": analysis.verdict,
            }
            if analysis.detail:
                line["detail"] = analysis.detail
            print(json.dumps(line), flush=True)
        else:
            summary = f"{len(analysis.faces)} face(s), verdict {analysis.verdict}"
            if analysis.target is not None:
                summary += f", best box {analysis.target.face.xywh()} score {analysis.target.face.score:.3f}"
            elif analysis.detail:
                summary += f" ({analysis.detail})"
            print(f"{name}: {summary}", flush=True)
        if args.annotate:
            write_image(args.annotate / (Path(name).stem + ".annotated.jpg"), annotate(frame, analysis, config.crop))
    return status
