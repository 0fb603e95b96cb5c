"""What each `faceagent` command runs: one function per command, registered under its name where it is defined.

Each imports its handler module inside its body, so building the parser (`faceagent --help`) loads none of
them, nor the heavy libraries they need (onnxruntime, cv2, paho, picamera2); go-to-definition still leads from
here to the handler.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]

# Command name ("detect", or "ctl enroll" for a verb) -> what runs it; filled by @command below.
COMMANDS: dict[str, Handler] = {}


def command(*names: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as what runs these commands."""
    def register(handler: Handler) -> Handler:
        for name in names:
            if name in COMMANDS:
                raise ValueError(f"command {name!r} is registered twice")
            COMMANDS[name] = handler
        return handler
    return register


@command("check-config")
def check_config(args: argparse.Namespace) -> int:
    from agent.cli.check_config import cmd_check_config

    return cmd_check_config(args)


@command("detect")
def detect(args: argparse.Namespace) -> int:
    from agent.cli.detect import cmd_detect

    return cmd_detect(args)


@command("doctor")
def doctor(args: argparse.Namespace) -> int:
    from agent.cli.doctor import cmd_doctor

    return cmd_doctor(args)


@command("snapshot")
def snapshot(args: argparse.Namespace) -> int:
    from agent.cli.snapshot import cmd_snapshot

    return cmd_snapshot(args)


@command("run")
def run(args: argparse.Namespace) -> int:
    from agent.cli.run import cmd_run

    return cmd_run(args)


@command("enroll")
def enroll(args: argparse.Namespace) -> int:
    from agent.cli.enroll import cmd_enroll

    return cmd_enroll(args)


@command("ctl enroll")
def ctl_enroll(args: argparse.Namespace) -> int:
    from agent.cli.ctl import cmd_ctl_enroll

    return cmd_ctl_enroll(args)


@command("ctl delete")
def ctl_delete(args: argparse.Namespace) -> int:
    from agent.cli.ctl import cmd_ctl_delete

    return cmd_ctl_delete(args)


@command("ctl snapshot")
def ctl_snapshot(args: argparse.Namespace) -> int:
    from agent.cli.ctl import cmd_ctl_snapshot

    return cmd_ctl_snapshot(args)


@command("ha show", "ha remove")
def ha(args: argparse.Namespace) -> int:
    from agent.cli.ha import cmd_ha

    return cmd_ha(args)


@command("bench")
def bench(args: argparse.Namespace) -> int:
    from agent.devtools.bench import cmd_bench

    return cmd_bench(args)


@command("emulator")
def emulator(args: argparse.Namespace) -> int:
    from agent.devtools.emulator import cmd_emulator

    return cmd_emulator(args)
