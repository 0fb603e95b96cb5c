"""`faceagent check-config`: validate the config and print it with secrets redacted (exit 78 when invalid)."""

from __future__ import annotations

import argparse

import yaml

from agent.cli.common import fail, load_config_or_exit
from agent.config import require_cloud_secrets
from agent.errors import ConfigError, ExitCode


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    try:
        require_cloud_secrets(config)
    except ConfigError as exc:
        return fail(exc.message, ExitCode.CONFIG)
    print(yaml.safe_dump(config.redacted(), sort_keys=False), end="")
    return ExitCode.OK
