"""HTTP on loopback: POST / for the API, /_control for faults and state; the transport-level faults live here.

Transport faults (latency, HTTP 5xx, dropped connections, oversized bodies) happen before the service sees a
request; everything after that is service.py. Every answer carries the HTTP `Date` header, from which a client
learns the server's clock.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.control import ControlError
from agent.devtools.emulator.faults import Faults
from agent.devtools.emulator.gateway import Credentials
from agent.devtools.emulator.images import FaceChecker
from agent.devtools.emulator.service import Answer, Emulator
from agent.devtools.emulator.state import EmulatorState

log = logging.getLogger("agent.devtools.emulator")

SETTLE_TIMEOUT_S = 30.0  # GET /_control/state?settled=1 waits at most this long by default
MAX_SETTLE_TIMEOUT_S = 300.0
DEMO_SECRET_ID = "AKIDEMULATOR"  # noqa: S105
DEMO_SECRET_KEY = "emulator-secret-key"  # noqa: S105 - the emulator's well-known default, never a real key


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Answers go out as they are written: with Nagle's algorithm, a body written after its headers waits
        # for the client's delayed ACK (40 ms on Linux) on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)  # also sends Date
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (a late answer after its read timeout)
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without an answer (RST where possible)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def _answer(self, answer: Answer) -> None:
        if answer.kind == "drop":
            self._drop()
        elif answer.error is not None:
            error = {"Error": {"Code": answer.error.code, "Message": answer.error.message}, "RequestId": str(uuid.uuid4())}
            self._send_json(200, {"Response": error})
        else:
            self._send_json(200, {"Response": {**(answer.result or {}), "RequestId": str(uuid.uuid4())}})

    def do_GET(self) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/_control/stats":
            self._send_json(200, emu.stats())
        elif url.path == "/_control/state" and query.get("settled", ["0"])[0] in ("1", "true"):
            try:
                timeout = min(MAX_SETTLE_TIMEOUT_S, float(query.get("timeout", [SETTLE_TIMEOUT_S])[0]))
            except ValueError:
                self._send_json(400, {"error": "timeout must be a number of seconds"})
                return
            self._send_json(200, emu.settled_state(timeout))
        elif url.path == "/_control/state":
            self._send_json(200, emu.state.snapshot())
        else:
            self._send_json(404, {"error": "POST / for the API; POST /_control, GET /_control/stats or /_control/state"})

    def do_POST(self) -> None:
        arrival = time.monotonic()
        emu = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        if length > limits.MAX_BODY_BYTES + 1024 * 1024:
            self.rfile.read(length)
            self._answer(emu.refusal(None, ApiError("RequestSizeLimitExceeded", limits.MESSAGES["RequestSizeLimitExceeded"])))
            return
        body = self.rfile.read(length)
        if self.path.startswith("/_control"):
            try:
                self._send_json(200, emu.control(json.loads(body or b"{}")))
            except (ControlError, ValueError) as exc:
                self._send_json(400, {"error": str(exc)})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        action = headers.get("x-tc-action", "")
        emu.count(f"requests.{action}")
        faults = emu.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.outage or faults.take_count("http_500_next") or faults.chance("http_500_rate"):
            emu.count(f"http_5xx.{action}")
            self._send_json(503 if faults.outage else 500, {"error": "injected server error"})
            return
        if faults.take_count("drop_next") or faults.chance("drop_rate"):
            emu.count(f"dropped.{action}")
            self._drop()
            return
        if len(body) > limits.MAX_BODY_BYTES:
            self._answer(emu.refusal(action, ApiError("RequestSizeLimitExceeded", limits.MESSAGES["RequestSizeLimitExceeded"])))
            return
        try:
            prepared = emu.prepare(action, headers, body)
        except ApiError as exc:
            self._answer(emu.refusal(action, exc))
            return
        self._answer(emu.run(action, prepared, arrival))


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)
        self.emulator = emulator

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that closes or resets its connection (a timeout, a closed session) is normal here: no traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        name = host if isinstance(host, str) else host.decode()
        return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


def make_server(
    host: str = "127.0.0.1", port: int = 0, *, secret_id: str = DEMO_SECRET_ID, secret_key: str = DEMO_SECRET_KEY,
    state_file: Path | None = None, faults: Faults | None = None, face_check: bool = True, session_token: str | None = None,
) -> EmulatorServer:
    """Build a server (not yet serving); `serve_forever()` it in a thread or run `faceagent emulator`.

    With `session_token`, the account takes temporary credentials: every request must carry that X-TC-Token.
    """
    ctx = Context(EmulatorState(state_file), faults or Faults(), FaceChecker(face_check))
    return EmulatorServer((host, port), Emulator(Credentials(secret_id, secret_key, session_token), ctx))
