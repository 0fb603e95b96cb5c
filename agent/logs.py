"""The one logging setup: terminal text, journald-friendly text, or JSON lines — always redacted.

Redaction happens on the final formatted line (message, arguments and traceback alike), so a
secret or an image cannot leak through an f-string, an exception message or a repr of a request.
Under journald every line starts with its syslog priority (`<4>` for a warning: sd-daemon(3)), so
`journalctl -p warning` finds warnings and errors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TextIO

REDACTED = "<redacted>"

# Authorization header values (TC3 or anything else) and the signature inside them.
_AUTH_RE = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)([^'\",}\n]+)")
_TC3_RE = re.compile(r"TC3-HMAC-SHA256\s+Credential=[^\s,'\"]*(,\s*SignedHeaders=[^\s,'\"]*)?(,\s*Signature=[0-9a-fA-F]*)?")
# Long base64 runs are image data (or keys); 120+ chars never occur in our own messages.
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4}){30,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Values of JSON/dict fields that carry images or secrets, whatever their length.
_FIELD_RE = re.compile(
    r"""(?i)(\b['"]?(?:Images|Image|jpeg_b64|preview_jpeg_b64|SecretKey|secret_key|password|X-TC-Token)['"]?\s*[:=]\s*)"""
    r"""(\[[^\]]*\]|'[^']*'|"[^"]*"|[^\s,}]+)"""
)
# A command signature: quoted (a dict or JSON) or a hex digest. Not the words of a message about the field
# ("sig: signed commands are required").
_SIG_RE = re.compile(r"""(?i)(\b['"]?(?:sig|signature)['"]?\s*[:=]\s*)('[^']*'|"[^"]*"|[0-9a-f]{16,})""")


class SecretRegistry:
    """Exact secret values to strip from every log line (the SecretKey, the MQTT password, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, *values: str | None) -> None:
        with self._lock:
            # Very short strings would shred ordinary text; the config loader refuses empty secrets anyway.
            new = {v for v in values if v and len(v) >= 4}
            new |= {repr(v)[1:-1] for v in new}  # also as a repr() shows it, in an exception message
            self._values = tuple(sorted(set(self._values) | new, key=len, reverse=True))

    def values(self) -> Iterable[str]:
        return self._values


SECRETS = SecretRegistry()


def redact(text: str) -> str:
    """Remove registered secrets, Authorization values, image fields and base64 runs from `text`."""
    for value in SECRETS.values():
        if value in text:
            text = text.replace(value, REDACTED)
    text = _TC3_RE.sub("TC3-HMAC-SHA256 " + REDACTED, text)
    text = _AUTH_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _FIELD_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SIG_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _BASE64_RE.sub(lambda m: f"<base64 {len(m.group(0))} chars>", text)


# Syslog priorities of the logging levels, for the `<N>` line prefix journald reads (sd-daemon(3)).
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(level: int) -> int:
    """The syslog priority of a logging level (levels between the named ones take the next more severe one)."""
    return next((prio for lvl, prio in sorted(SYSLOG_PRIORITY.items(), reverse=True) if level >= lvl), 7)


def with_priority(text: str, level: int) -> str:
    """Every line of `text` prefixed `<N>`: journald reads the prefix per line (a traceback keeps its priority)."""
    prefix = f"<{syslog_priority(level)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


def journald_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is connected to journald: $JOURNAL_STREAM names its device and inode (systemd.exec(5))."""
    expected = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.StringIO and other streams without a descriptor
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


class RedactingFormatter(logging.Formatter):
    """Human-readable lines; under journald without a timestamp (it adds its own) and with the priority prefix."""

    def __init__(self, journald: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s" if journald else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        super().__init__(fmt)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        return with_priority(text, record.levelno) if self.journald else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and exc when there is one (under journald: priority prefixed)."""

    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        line = redact(json.dumps(entry, ensure_ascii=False))  # again: a secret JSON escaping has changed
        return with_priority(line, record.levelno) if self.journald else line


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger once for the whole program and return its handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    journald = journald_stream(handler.stream)
    handler.setFormatter(JsonFormatter(journald) if fmt == "json" else RedactingFormatter(journald))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(str(level).strip().upper(), str(level).strip().upper())
    known = name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    root.setLevel(name if known else "INFO")  # a misspelt level (an environment variable) must not stop the daemon
    if not known:
        logging.getLogger("faceagent").warning("log level %r is not one of DEBUG, INFO, WARNING, ERROR: using INFO", level)
    # Third-party loggers that echo request headers/bodies at DEBUG stay at INFO at most.
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    threading.excepthook = log_thread_exception
    return handler


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception through the redacting handler: Python's default hook prints the traceback, with
    whatever secret or image its locals' reprs hold, straight to stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("faceagent").critical("thread %s stopped on an uncaught exception", name, exc_info=exc_info)
