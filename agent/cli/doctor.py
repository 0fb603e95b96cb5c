"""`faceagent doctor`: what an installer runs before leaving the site — every part the service needs, checked once.

config valid, credentials readable where the service reads them, the model's checksum, the camera delivering
frames, the broker accepting the configured TLS and credentials, the cloud accepting the keys (a read), the
device clock against the cloud's, with liveness.mode cloud the key's CAM policy allowing DetectLiveFaceAccurate,
free space for the state. Each failure comes with how to fix it.
Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 78 the configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.cli.common import fail, load_config_for, load_config_or_exit
from agent.cli.doctor_checks import (
    Check,
    check_broker,
    check_camera,
    check_cloud,
    check_credentials,
    check_disk,
    check_identity,
    check_liveness,
    check_model,
)
from agent.config import Config, config_path_from
from agent.errors import ConfigError, ExitCode

CHECKS = ("credentials", "model", "camera", "broker", "cloud", "clock", "liveness", "disk", "identity")  # liveness: with liveness.mode cloud only
MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def run_checks(config: Config, args: argparse.Namespace, clock: Callable[[], float] = time.time) -> list[Check]:
    """Every check not in `args.skip`, in the order the service needs them (`clock`: the device clock, for tests)."""
    skip = set(args.skip or ())
    found: list[Check] = []
    if "credentials" not in skip:
        found.append(check_credentials(config, args.credentials))
    for name, check in (("model", check_model), ("camera", check_camera), ("broker", check_broker)):
        found.append(Check(name, "skip", "--skip") if name in skip else check(config))
    if "cloud" in skip:
        found += [Check("cloud", "skip", "--skip"), Check("clock", "skip", "needs the cloud check")]
    else:
        cloud, clock_line = check_cloud(config, clock)
        found += [cloud, clock_line if "clock" not in skip else Check("clock", "skip", "--skip")]
    if config.liveness.mode == "cloud":
        found.append(Check("liveness", "skip", "--skip") if "liveness" in skip or "cloud" in skip else check_liveness(config))
    found.append(Check("disk", "skip", "--skip") if "disk" in skip else check_disk(config))
    found.append(Check("identity", "skip", "--skip") if "identity" in skip else check_identity(config))
    return found


def report(config_path: str, config: Config, checks: list[Check]) -> str:
    """The checklist as an installer reads it."""
    lines = [f"faceagent doctor: {config_path}, device {config.device_id}"]
    for check in checks:
        lines.append(f"  {MARKS[check.status]:<5} {check.name:<12} {check.detail}")
        if check.fix and check.status in ("fail", "warn"):
            lines.append(f"        {'':<12} fix: {check.fix}")
    failed = [c.name for c in checks if c.status == "fail"]
    lines.append(f"{len(failed)} check(s) failed ({', '.join(failed)}): fix and run faceagent doctor again" if failed else
                 "all checks passed" + (" (see the warnings)" if any(c.status == "warn" for c in checks) else ""))
    return "\n".join(lines)


def save_report(path: Path, config: Config, checks: list[Check], tests_dir: Path | None) -> int:
    """The field report (doctor_report.py) into `path`; exit 2 when the file cannot be written."""
    from agent.cli.doctor_report import build_report, write_report

    if not path.parent.is_dir():
        return fail(f"--report {path}: the folder {path.parent} does not exist", ExitCode.USAGE)
    report = build_report(config, checks, tests_dir)
    try:
        write_report(path, report)
    except OSError as exc:
        return fail(f"--report {path}: cannot write it ({exc.strerror or exc})", ExitCode.USAGE)
    print(f"field report written to {path}: attach it to your report (secrets are redacted; read it first)", file=sys.stderr)
    return ExitCode.OK


def cmd_doctor(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    if args.json:  # an invalid configuration is still one JSON object, with its problems as the failed `config` check
        try:
            config = load_config_for(args)
        except ConfigError as exc:
            print(json.dumps({"config": str(config_path_from(args.config)), "device_id": None, "checks": [
                Check("config", "fail", exc.message, "fix every key named and run faceagent doctor again").as_json()]}))
            return ExitCode.CONFIG
    else:
        config = load_config_or_exit(args)  # an invalid configuration: every problem printed, exit 78
    checks = run_checks(config, args, clock)
    if args.report is not None:
        written = save_report(args.report, config, checks, args.tests)
        if written != ExitCode.OK:
            return written
    if args.json:
        print(json.dumps({"config": str(config_path_from(args.config)), "device_id": config.device_id,
                          "checks": [c.as_json() for c in checks]}))
    else:
        print(report(str(config_path_from(args.config)), config, checks))
    return ExitCode.FAILED if any(c.status == "fail" for c in checks) else ExitCode.OK
