"""`faceagent run`: the MQTT enrollment daemon (exit 0 on SIGTERM, 78 on a configuration problem, 1 fatal)."""

from __future__ import annotations

import argparse
import logging

from agent.app import App, preflight
from agent.cli.common import fail, load_config_or_exit
from agent.config import require_cloud_secrets
from agent.errors import ConfigError, ExitCode, FaceAgentError, ModelError
from agent.service.store import StoreError

log = logging.getLogger("faceagent")


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    app = App(config, secrets_from=args.credentials.environ())
    app.handle_signals()
    try:
        require_cloud_secrets(config, args.credentials.directory)
        problems = preflight(config, model=False)  # the model is loaded (and checked) once, by start()
        if problems:
            raise ConfigError(problems)
        app.start()
    except ConfigError as exc:
        return fail(exc.message, ExitCode.CONFIG)
    except (ModelError, StoreError) as exc:
        # A bad model path or an unusable state_dir will not fix itself: 78 stops systemd's restart loop.
        key = "detector.model_path: " if isinstance(exc, ModelError) and config.detector.model_path is not None else ""
        log.error("%s%s", key, exc.message)
        app.notifier.status(f"failed: {exc.message}")
        return ExitCode.CONFIG
    except FaceAgentError as exc:
        log.error("cannot start: %s", exc.message)
        return ExitCode.FAILED
    return app.run()
