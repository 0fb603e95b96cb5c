"""`faceagent detect`: detector + quality + selection on image files (contract §1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import DEFAULT_CONFIG_PATH, Config, config_from_mapping
from agent.errors import ConfigError, ExitCode, ImageUnreadable

if TYPE_CHECKING:
    from agent.vision.detector import FaceDetector


def optional_config(args: argparse.Namespace) -> Config:
    """The configured detector/quality settings when a config exists, else the defaults.

    `detect` and `bench` are useful on a laptop with no /etc/faceagent; an explicit `--config` or
    `$FACEAGENT_CONFIG` must load, though.
    """
    import os

    from agent.cli import load_config_or_exit

    if args.config or os.environ.get("FACEAGENT_CONFIG") or DEFAULT_CONFIG_PATH.exists():
        return load_config_or_exit(args)
    try:
        # No file: defaults, but secrets (e.g. the command signing key for `ctl`) still come from the environment.
        return config_from_mapping({"camera": {"type": "files", "path": "."}}, os.environ)
    except ConfigError as exc:
        print(f"faceagent: {exc.message}", file=sys.stderr)
        raise SystemExit(ExitCode.CONFIG) from None


def build_detector(config: Config) -> FaceDetector:
    """The detector the config asks for (onnxruntime is imported here, not at module import)."""
    from agent.vision.detector import FaceDetector

    d = config.detector
    return FaceDetector(d.model_path, (d.input_width, d.input_height), d.threads, d.score_threshold, d.nms_threshold)


def cmd_detect(args: argparse.Namespace) -> int:
    from agent.errors import ModelError
    from agent.images import read_image, write_image
    from agent.vision.annotate import annotate
    from agent.vision.selection import analyze

    config = optional_config(args)
    try:
        detector = build_detector(config)
    except ModelError as exc:
        print(f"faceagent: {exc.message}", file=sys.stderr)
        return ExitCode.CONFIG
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
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
            write_image(args.annotate / (Path(name).stem + ".annotated.jpg"), annotate(frame, analysis))
    return status
