"""What every command-line handler shares: loading the config (or exiting 78) and printing results."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH, Config, config_from_mapping, config_path_from, load_config
from agent.errors import ConfigError, ExitCode
from agent.logs import SECRETS, setup_logging

INSTALLED_CREDENTIALS = "credentials"  # the folder beside agent.yaml that install.sh creates (root only)


def fail(message: str, code: int) -> int:
    """Print `faceagent: message` to stderr and return `code` (for `return fail(...)`)."""
    print(f"faceagent: {message}", file=sys.stderr)
    return code


@dataclass(frozen=True)
class Credentials:
    """Where a command run by hand reads the secrets: a credentials folder, else only the environment."""

    directory: Path | None
    note: str  # one line naming the source, for output and messages

    def environ(self) -> dict[str, str]:
        """The environment to resolve the secrets in: this process's, with $CREDENTIALS_DIRECTORY naming `directory`.

        A copy: the process environment is never written (a child process would inherit the folder unasked).
        """
        env = dict(os.environ)
        if self.directory is not None:
            env["CREDENTIALS_DIRECTORY"] = str(self.directory)
        return env


def _readable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.R_OK | os.X_OK)


def credentials_source(explicit: Path | None, config_path: Path, environ: Mapping[str, str] = os.environ) -> Credentials:
    """`--credentials-dir`, else $CREDENTIALS_DIRECTORY (systemd), else the installed folder beside the config file.

    On an installed device the secrets live in /etc/faceagent/credentials, readable by root only (systemd hands them
    to the service): read by hand, that folder is where the service's secrets are.
    """
    if explicit is not None:
        if not _readable_dir(explicit):
            raise SystemExit(fail(f"--credentials-dir {explicit}: not a folder this user can read (run as root?)", ExitCode.CONFIG))
        return Credentials(explicit, f"credentials from {explicit}")
    if environ.get("CREDENTIALS_DIRECTORY"):
        folder = Path(environ["CREDENTIALS_DIRECTORY"])
        return Credentials(folder, f"credentials from $CREDENTIALS_DIRECTORY ({folder})")
    installed = config_path.parent / INSTALLED_CREDENTIALS
    if _readable_dir(installed):
        return Credentials(installed, f"credentials from {installed}")
    if installed.is_dir():
        return Credentials(None, f"{installed} is readable by root only: credentials from the environment "
                                 "(run with sudo to use the installed ones)")
    return Credentials(None, "credentials from the environment")


def load_config_or_exit(args: argparse.Namespace) -> Config:
    """Load the config named by `args.config` (see `load_config_for`), or print every problem and exit 78."""
    try:
        return load_config_for(args)
    except ConfigError as exc:
        raise SystemExit(fail(exc.message, ExitCode.CONFIG)) from None


def load_config_for(args: argparse.Namespace) -> Config:
    """Load the config named by `args.config`; a `ConfigError` lists every problem.

    Secrets come from `credentials_source`, remembered in `args.credentials` (whose `environ()` the commands
    that read temporary keys again pass on). Registers the secrets with the log redactor and applies the config's
    logging settings (`--log-level`, then `$FACEAGENT_LOG_LEVEL` / `$FACEAGENT_LOG_FORMAT`, still win).
    """
    path = config_path_from(args.config)
    credentials = credentials_source(getattr(args, "credentials_dir", None), path)
    args.credentials = credentials
    config = load_config(path, credentials.environ())
    SECRETS.add(*config.secrets.revealed())
    level = args.log_level or os.environ.get("FACEAGENT_LOG_LEVEL") or config.logging.level
    setup_logging(level, os.environ.get("FACEAGENT_LOG_FORMAT") or config.logging.format)
    return config


def optional_config(args: argparse.Namespace) -> Config:
    """The configured settings when a config exists, else the defaults.

    `detect`, `bench` and `ctl` are useful on a laptop with no /etc/faceagent; an explicit `--config`
    or `$FACEAGENT_CONFIG` must load, though.
    """
    if args.config or os.environ.get("FACEAGENT_CONFIG") or DEFAULT_CONFIG_PATH.exists():
        return load_config_or_exit(args)
    args.credentials = Credentials(None, "credentials from the environment")
    try:
        # No file: defaults, but secrets (e.g. the command signing key for `ctl`) still come from the environment.
        return config_from_mapping({"camera": {"type": "files", "path": "."}}, os.environ)
    except ConfigError as exc:
        raise SystemExit(fail(exc.message, ExitCode.CONFIG)) from None


def result_ok(result: dict[str, Any]) -> bool:
    """Exit 0 for this result: it succeeded, or a dry run met nothing in the way."""
    return result.get("status") == "succeeded" or (result.get("status") == "dry_run" and not result.get("error"))


def format_result(result: dict[str, Any]) -> str:
    """One readable paragraph for a person at a terminal (an enroll, dry-run or delete result)."""
    status, person = result.get("status"), result.get("person_id")
    if result.get("deleted_face_ids") is not None or result.get("not_found_face_ids") is not None:
        lines = [f"{status}: person {person} — {len(result.get('deleted_face_ids') or [])} face(s) deleted"]
    elif status == "dry_run":
        lines = [f"dry run: person {person} — {result.get('would_send', 0)} image(s) would be sent; nothing was written"]
    elif status in ("rejected", "expired"):
        lines = [f"{status}: {f'person {person} — ' if person else ''}nothing was run"]
    else:
        lines = [f"{status}: person {person} — {result.get('faces_added', 0)} face(s) added"]
    if result.get("replayed"):
        lines.insert(0, "replayed: the stored result of an earlier command with this id; nothing was run again")
    if result.get("candidate_face_ids"):
        lines.append(f"  faces that may be this command's: {', '.join(result['candidate_face_ids'])}")
    for key, label in (("face_ids", "face ids"), ("deleted_face_ids", "deleted"), ("not_found_face_ids", "already gone")):
        if result.get(key):
            lines.append(f"  {label}: {', '.join(result[key])}")
    if result.get("person_at_cloud"):
        lines.append(f"  at the cloud: {describe_person(result['person_at_cloud'])}")
    if result.get("liveness"):
        live = result["liveness"]
        lines.append(f"  liveness checked: score(s) {', '.join(f'{s:g}' for s in live['scores'])} (threshold {live['threshold']:g})")
    if result.get("error"):
        prefix = "a real run would meet " if status == "dry_run" else ""
        lines.append(f"  {prefix}{result['error']['code']}: {result['error']['message']}")
    if result.get("crops"):
        lines.append(f"  crops written: {', '.join(result['crops'])}")
    if result.get("cloud_request_id"):
        lines.append(f"  cloud RequestId: {result['cloud_request_id']}")
    timings = result.get("timings_ms") or {}
    lines.append("  timings ms: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return "\n".join(lines)


def describe_person(person: dict[str, Any]) -> str:
    """A dry run's `person_at_cloud` in words."""
    if not person.get("exists"):
        return (f"no such person yet: it would be created in group {person.get('would_create_in_group')} "
                f"({person.get('group_persons')} person(s) in it)")
    groups = ", ".join(person.get("groups") or []) or "no group"
    return (f"{person.get('person_name') or 'no name'}, {len(person.get('face_ids') or [])} face(s), "
            f"{person.get('free_slots')} free slot(s), in {groups}")


def format_verdict(verdict: str, detail: str, faces: list[dict[str, Any]]) -> str:
    """A frame's verdict as one line for a terminal: what the device would do with it, and the chosen face's figures."""
    count = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
    if verdict != "ok":
        return f"verdict {verdict}: {detail or 'no usable face'} ({count})"
    chosen = next((f for f in faces if f.get("usable")), faces[0] if faces else {})
    x, y, w, h = chosen.get("box", [0, 0, 0, 0])
    quality = chosen.get("quality", {})
    figures = [f"score {chosen.get('score', 0):.2f}", f"box {x},{y} {w}x{h}"]
    figures += [f"{label} {quality[key]:g}{unit}" for key, label, unit in (
        ("eye_distance_px", "eyes", " px apart"), ("sharpness", "sharpness", ""), ("brightness", "brightness", ""),
        ("yaw_deg", "yaw", " deg"), ("pitch_deg", "pitch", " deg"), ("roll_deg", "roll", " deg")) if key in quality]
    return f"verdict ok: ready to enroll ({count}); chosen face: {', '.join(figures)}"
