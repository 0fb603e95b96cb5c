"""`faceagent` command line: the parser, and the dispatch to the function registered for each command (commands.py).

Parsing only: every handler imports its heavy modules (onnxruntime, cv2, paho, picamera2) inside
its body, so `faceagent --help` is fast and works where those libraries are missing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.cli.commands import COMMANDS
from agent.errors import ExitCode

log = logging.getLogger("faceagent")


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="FILE",
        help="config file (default: $FACEAGENT_CONFIG, else /etc/faceagent/agent.yaml)",
    )
    parser.add_argument(
        "--credentials-dir", metavar="DIR", type=Path,
        help="read the secrets from DIR (default: $CREDENTIALS_DIRECTORY, else the credentials folder beside the config "
             "file, /etc/faceagent/credentials when installed, if this user can read it)",
    )


def _pattern_arg(pattern_name: str, what: str) -> Callable[[str], str]:
    """An argparse type that accepts what the device would (protocol.py's patterns), naming the rule otherwise."""
    def check(value: str) -> str:
        import re

        from agent.service import protocol

        if not re.fullmatch(getattr(protocol, pattern_name), value):
            raise argparse.ArgumentTypeError(f"{value!r}: {what}")
        return value
    return check


def _number_arg(low: float, high: float, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    """An argparse type for a finite number in [low, high] (`inf`, `nan` and 1e308 are not durations or ports)."""
    def check(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not low <= number <= high:  # also false for nan
            raise argparse.ArgumentTypeError(f"{value!r}: must be from {low:g} to {high:g}")
        return number
    return check


PERSON_ID_HELP = "a person id is 1-64 characters of letters, digits and -%@#&_"
COMMAND_ID_HELP = "a command id is 1-64 characters of letters, digits, - _ . :"


def _add_ctl_verb(ctl: Any, name: str, help_text: str, timeout: float) -> argparse.ArgumentParser:
    """A `faceagent ctl` verb with the options every verb shares."""
    c: argparse.ArgumentParser = ctl.add_parser(name, help=help_text)
    _add_config_arg(c)
    c.add_argument("--device", required=True, type=_pattern_arg(
        "DEVICE_ID_PATTERN", "a device id is 1-64 characters of letters, digits, - _ . (one device: no wildcards)"))
    c.add_argument("--timeout", type=_number_arg(1, 86400), default=timeout,
                   help=f"seconds to wait for the answer, 1-86400 (default {timeout:g}; exit 3 after); the command expires then too")
    c.add_argument("--broker", help="mqtt[s]://host:port (default: mqtt.url of the config, else mqtt://127.0.0.1:1883)")
    c.add_argument("--id", dest="command_id", help="command id (default: a new uuid)", type=_pattern_arg(
        "COMMAND_ID_PATTERN", COMMAND_ID_HELP))
    c.add_argument("--json", action="store_true", help="print the answer as JSON")
    c.add_argument("--queue", action="store_true",
                   help="send even when the device is offline or was never seen on this broker (it runs when it comes back, "
                        "unless --timeout has passed by then)")
    return c


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceagent",
        description="Edge face enrollment: camera -> face detector -> best face -> Tencent Cloud IAI CreateFace, over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"faceagent {__version__}")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override logging.level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="the MQTT enrollment daemon")
    _add_config_arg(p)

    p = sub.add_parser("check-config", help="validate the config and print it with secrets redacted")
    _add_config_arg(p)

    p = sub.add_parser("doctor", help="check config, credentials, model, camera, broker, cloud, clock and disk; a fix for each failure")
    _add_config_arg(p)
    p.add_argument("--skip", action="append", choices=["credentials", "model", "camera", "broker", "cloud", "clock", "liveness", "disk", "identity"],
                   help="leave a check out (repeat for more), e.g. camera while the service holds it")
    p.add_argument("--json", action="store_true", help="the checks as one JSON object")
    p.add_argument("--report", type=Path, metavar="FILE",
                   help="also write the field report (board, OS, onnxruntime, camera, detector speed, memory, hardware tests; "
                        "secrets redacted) as JSON to FILE")
    p.add_argument("--tests", type=Path, metavar="DIR", help="the tests folder for the report's `pytest -m hw` (default: beside the package)")

    p = sub.add_parser("detect", help="run detector, quality and selection on image files")
    _add_config_arg(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--annotate", metavar="DIR", type=Path, help="write annotated copies into DIR")

    p = sub.add_parser("snapshot", help="one frame from the configured camera")
    _add_config_arg(p)
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--annotate", action="store_true", help="draw detected faces and the verdict")

    p = sub.add_parser("enroll", help="one enrollment without MQTT")
    _add_config_arg(p)
    p.add_argument("--person-id", required=True)
    p.add_argument("--image", action="append", type=Path, default=[], metavar="FILE", help="use these files instead of the camera")
    p.add_argument("--faces", type=int, default=1, help="distinct captures to add (1-4)")
    p.add_argument("--create-person", metavar="GROUP_ID", help="create the person in this group if it does not exist")
    p.add_argument("--person-name", help="name for --create-person (default: the person id)")
    p.add_argument("--unique-person-control", type=int, choices=range(5), metavar="{0-4}",
                   help="with --create-person: refuse a face that already belongs to another person (default: enroll.unique_person_control)")
    p.add_argument("--dry-run", action="store_true",
                   help="capture, check and read the person at the cloud; write nothing there (the crops go to --out-dir)")
    p.add_argument("--out-dir", type=Path, default=Path("."), help="where --dry-run writes the crops (default .)")
    p.add_argument("--json", action="store_true", help="print the result object as JSON")

    p = sub.add_parser("ctl", help="operator side: send commands to a device")
    ctl = p.add_subparsers(dest="ctl_command", metavar="ACTION", required=True)
    c = _add_ctl_verb(ctl, "enroll", "publish an enroll command, stream progress, print the result", 60.0)
    c.add_argument("--person-id", required=True, type=_pattern_arg("IAI_ID_PATTERN", PERSON_ID_HELP))
    c.add_argument("--faces", type=int, default=1, choices=range(1, 5), metavar="{1-4}", help="distinct captures to add")
    c.add_argument("--create-person", metavar="GROUP_ID", help="create the person in this group if it does not exist")
    c.add_argument("--person-name", help="name for --create-person (default: the person id)")
    c.add_argument("--unique-person-control", type=int, choices=range(5), metavar="{0-4}",
                   help="with --create-person: refuse a face that already belongs to another person (default: the device's)")
    c.add_argument("--dry-run", action="store_true", help="capture, check and read the person at the cloud; write nothing")
    c.add_argument("--preview", metavar="DIR", type=Path, help="save the crops the device uploaded (small JPEGs) into DIR")
    c = _add_ctl_verb(ctl, "delete", "undo: delete the faces an enrollment added, or given face ids", 30.0)
    c.add_argument("--person-id", required=True, type=_pattern_arg("IAI_ID_PATTERN", PERSON_ID_HELP),
                   help="whose faces (the device checks the enrollment was for this person)")
    target = c.add_mutually_exclusive_group(required=True)
    target.add_argument("--enrollment", metavar="COMMAND_ID", help="the id of the enroll command whose faces to delete",
                        type=_pattern_arg("COMMAND_ID_PATTERN", COMMAND_ID_HELP))
    target.add_argument("--face-id", dest="face_ids", action="append", metavar="FACE_ID", help="a face to delete (repeat for more, at most 5)",
                        type=_pattern_arg("FACE_ID_PATTERN", "a face id is 1-64 characters of letters, digits, _ and -"))
    c = _add_ctl_verb(ctl, "snapshot", "save an annotated frame from the device and print its verdict", 30.0)
    c.add_argument("--out", required=True, type=Path, metavar="FILE.jpg")

    p = sub.add_parser("ha", help="Home Assistant discovery of this device: show the configs, or remove them at the broker")
    ha = p.add_subparsers(dest="ha_command", metavar="ACTION", required=True)
    h = ha.add_parser("show", help="print every discovery topic and config this device publishes")
    _add_config_arg(h)
    h = ha.add_parser("remove", help="publish empty retained configs: Home Assistant removes the entities")
    _add_config_arg(h)
    h.add_argument("--if-enabled", action="store_true", help="do nothing when home_assistant.discovery is off (uninstall.sh)")

    p = sub.add_parser("emulator", help="a local emulator of the Tencent Cloud IAI API")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address: 127.0.0.1, localhost or ::1")
    p.add_argument("--port", type=_number_arg(0, 65535, int), default=0, help="0 picks a free port")
    p.add_argument("--secret-id", default=os.environ.get("TENCENTCLOUD_SECRET_ID", "AKIDEMULATOR"))
    p.add_argument("--secret-key", default=os.environ.get("TENCENTCLOUD_SECRET_KEY", "emulator-secret-key"))
    p.add_argument("--state", type=Path, help="keep groups, persons and faces in this JSON file")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    p.add_argument("--qps-limit", type=float, default=0.0,
                   help="RequestLimitExceeded above this many requests/s over all actions (0: off; per action: POST /_control)")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered InternalError")
    p.add_argument("--http-500-rate", type=float, default=0.0, help="fraction of requests answered HTTP 500")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections closed without an answer")
    p.add_argument("--session-token", default=os.environ.get("TENCENTCLOUD_SESSION_TOKEN", ""),
                   help="accept temporary credentials: every request must carry this X-TC-Token (AuthFailure.TokenFailure otherwise)")
    p.add_argument("--no-face-check", action="store_true", help="skip the detector (-1101 is then never returned)")

    p = sub.add_parser("bench", help="measure detector and pipeline speed on this device")
    _add_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeat", type=int, default=30, help="timed runs per setting")
    p.add_argument("--no-daemon", dest="daemon", action="store_false",
                   help="skip the daemon figures (start-to-READY, idle CPU, RSS, local enrollment latency; needs mosquitto)")
    p.add_argument("--idle-seconds", type=float, default=60.0, help="how long the daemon's idle CPU is measured")
    p.add_argument("--recall", action="store_true",
                   help="add recall by face size, false positives and cost of every detector setting on composed 1280x720 frames (minutes)")
    p.add_argument("--recall-frames", type=int, default=200, help="composed frames for --recall")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    name = {"ctl": f"ctl {getattr(args, 'ctl_command', '')}", "ha": f"ha {getattr(args, 'ha_command', '')}"}.get(args.command, args.command)
    handler = COMMANDS.get(name)
    if handler is None:
        print(f"faceagent: {name} is not available in this build", file=sys.stderr)
        return ExitCode.FAILED
    return handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `faceagent` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from agent.logs import setup_logging

    setup_logging(args.log_level or os.environ.get("FACEAGENT_LOG_LEVEL", "INFO"), os.environ.get("FACEAGENT_LOG_FORMAT", "text"))
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return ExitCode.OK
    except BrokenPipeError:  # `faceagent detect --json ... | head`
        return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

