"""`faceagent check-config`: validate the config and print it with secrets redacted (exit 78 when invalid).

On an installed device run it as root: the secrets are in /etc/faceagent/credentials, which only root (and
systemd, for the service) can read; `--credentials-dir` names another folder.
"""

from __future__ import annotations

import argparse

import yaml

from agent.cli.common import fail, load_config_or_exit
from agent.config import read_secrets, require_cloud_secrets
from agent.errors import ConfigError, ExitCode


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.app import preflight

    config = load_config_or_exit(args)
    credentials = args.credentials
    try:
        require_cloud_secrets(config, credentials.directory)
    except ConfigError as exc:
        return fail(f"{exc.message}\n  ({credentials.note})", ExitCode.CONFIG)
    problems = preflight(config)
    if problems:
        return fail(ConfigError(problems).message, ExitCode.CONFIG)
    print(f"# {credentials.note}")
    sources: dict[str, str] = {}
    read_secrets(credentials.environ(), sources)  # the environment the config's secrets were resolved in
    for field, source in sources.items():
        print(f"# secrets.{field}: from the {source}")
    print(yaml.safe_dump(config.redacted(), sort_keys=False), end="")
    return ExitCode.OK
