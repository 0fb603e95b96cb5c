"""`faceagent emulator`: serve the emulator until SIGTERM/SIGINT; the URL is the first line printed."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading

from agent.devtools.emulator.faults import Faults
from agent.devtools.emulator.server import make_server

log = logging.getLogger("agent.devtools.emulator")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def cmd_emulator(args: argparse.Namespace) -> int:
    """Exit 0 after a signal; 2 when the address is refused (not loopback, busy, or not available here)."""
    if args.host not in LOOPBACK_HOSTS:
        print(f"faceagent emulator: --host {args.host} is not a loopback address: use 127.0.0.1 or ::1", file=sys.stderr)
        return 2
    faults = Faults(latency_ms=args.latency_ms, qps_limit=args.qps_limit, error_rate=args.error_rate,
                    http_500_rate=args.http_500_rate, drop_rate=args.drop_rate)
    try:
        server = make_server(args.host, args.port, secret_id=args.secret_id, secret_key=args.secret_key, state_file=args.state,
                             faults=faults, face_check=not args.no_face_check, session_token=args.session_token or None)
    except OSError as exc:
        reason = "the port is in use: pick another --port (or 0 for a free one)" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"faceagent emulator: cannot listen on {args.host} port {args.port}: {reason}", file=sys.stderr)
        return 2
    from agent.logs import SECRETS

    SECRETS.add(args.secret_key)
    if args.session_token:
        SECRETS.add(args.session_token)

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(server.base_url, flush=True)
    log.info("IAI emulator listening on %s (SecretId %s)", server.base_url, args.secret_id)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0
