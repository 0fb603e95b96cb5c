"""An HTTP proxy in front of the IAI emulator that forwards a request (so the emulator applies it), then answers
what HTTP allows and a hostile or broken middlebox does: a redirect, another status, a rewritten body.

`arm(action, ...)` sets the next answer for one action; every other request is forwarded untouched. Loopback
only, a free port, one per test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class HostileProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self._rules: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.forwarded: dict[str, int] = {}
        self.trickle_finished = threading.Event()  # a trickled answer was sent to its end
        self.trickle_abandoned = threading.Event()  # set at exit: stop trickling
        self.padded_sent = 0  # bytes of padding the client read (or the socket took) before it stopped
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                action = self.headers.get("X-TC-Action", "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                answer = requests.post(proxy.upstream, data=body, headers=headers, timeout=30, allow_redirects=False)
                with proxy._lock:
                    proxy.forwarded[action] = proxy.forwarded.get(action, 0) + 1
                    queued = proxy._rules.get(action) or []
                    rule = queued.pop(0) if queued else None
                if rule is not None and rule["then"] is not None:
                    rule["then"]()
                status, payload = answer.status_code, answer.content
                extra: dict[str, str] = {"Date": answer.headers.get("Date", "")}
                if rule is not None:
                    status = rule.get("status", status)
                    if rule.get("location"):
                        extra["Location"] = rule["location"]
                    if rule.get("rewrite") is not None:
                        data = answer.json()
                        data["Response"] = rule["rewrite"](data["Response"])
                        payload = json.dumps(data).encode()
                    if rule.get("raw") is not None:
                        payload = rule["raw"]
                if rule is not None and rule.get("trickle_s"):
                    proxy._trickle(self, status, payload, rule["trickle_s"])
                    return
                if rule is not None and rule.get("pad_bytes"):
                    proxy._pad(self, payload, rule["pad_bytes"])
                    return
                self.send_response(status)
                for key, value in extra.items():
                    if value:
                        self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def arm(self, action: str, *, status: int | None = None, location: str | None = None, rewrite: Rewrite | None = None,
            count: int = 1, then: Callable[[], None] | None = None, trickle_s: float = 0.0, pad_bytes: int = 0,
            raw: bytes | None = None) -> None:
        """After forwarding the next `count` `action`s: answer `status` (with `location`), and/or the `Response` rewritten;
        or the real answer with its header lines sent one byte every `trickle_s`; or with `pad_bytes` of whitespace
        before it; or `raw` bytes instead of the answer. `then` runs once it fired (to arm what comes next). Rules queue up
        per action in order."""
        rule: dict[str, Any] = {"location": location, "rewrite": rewrite, "then": then, "trickle_s": trickle_s, "pad_bytes": pad_bytes,
                                "raw": raw}
        if status is not None:
            rule["status"] = status
        with self._lock:
            self._rules.setdefault(action, []).extend([rule] * count)

    def _trickle(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes, every_s: float) -> None:
        """The answer's status line and headers one byte every `every_s`: each read returns within any read timeout."""
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        try:
            for byte in head:
                if self.trickle_abandoned.wait(every_s):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            handler.wfile.write(payload)
            self.trickle_finished.set()
        except OSError:
            return

    def _pad(self, handler: BaseHTTPRequestHandler, payload: bytes, pad: int) -> None:
        """A valid answer behind `pad` bytes of JSON whitespace, streamed; `padded_sent` counts what the client took."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(pad + len(payload)))
        handler.end_headers()
        chunk = b" " * (1 << 20)
        try:
            while self.padded_sent < pad:
                piece = chunk[: pad - self.padded_sent]
                handler.wfile.write(piece)
                self.padded_sent += len(piece)
            handler.wfile.write(payload)
        except OSError:
            return

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.trickle_abandoned.set()
        self.server.shutdown()
        self.server.server_close()
