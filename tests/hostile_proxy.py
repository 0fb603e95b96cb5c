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
            count: int = 1, then: Callable[[], None] | None = None) -> None:
        """After forwarding the next `count` `action`s: answer `status` (with `location`), and/or the `Response` rewritten;
        `then` runs once it fired (to arm what comes next). Rules queue up per action in the order they are armed."""
        rule: dict[str, Any] = {"location": location, "rewrite": rewrite, "then": then}
        if status is not None:
            rule["status"] = status
        with self._lock:
            self._rules.setdefault(action, []).extend([rule] * count)

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
