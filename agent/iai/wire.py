"""What one HTTP exchange with the cloud says when it fails: was the request sent, was TLS refused and why; and an
answer read up to a size cap.

Kept apart from the transport's signing and retry loop (transport.py), which decides what each of these means.
"""

from __future__ import annotations

import ssl

import requests

from agent.iai.errors import CloudTlsError, OutcomeUnknown

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # IAI's biggest answers (1000 groups, 100 candidates) are tens of KB


def chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps (args, `reason`, cause, context): requests nests urllib3 nests ssl/socket."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        item = stack.pop()
        if any(item is s for s in seen):
            continue
        seen.append(item)
        stack.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        stack.extend(linked for linked in (item.__cause__, item.__context__) if linked is not None)
    return seen


def never_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(item, (NewConnectionError, ConnectTimeoutError, NameResolutionError)) for item in chain(exc))


class AnswerTooLarge(OutcomeUnknown):
    """The answer went past MAX_ANSWER_BYTES: not read further (a Pi would be OOM-killed reading it whole)."""


def read_capped(response: requests.Response) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(f"the answer announces {declared} bytes: at most {MAX_ANSWER_BYTES} are read")
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise AnswerTooLarge(f"the answer exceeds {MAX_ANSWER_BYTES} bytes: not read further")
        chunks.append(chunk)
    return b"".join(chunks)


def reason_of(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else exc.__class__.__name__


def tls_problem(exc: BaseException, host: str) -> CloudTlsError | None:
    """A certificate refusal (a configuration or device-clock problem); None for other TLS failures."""
    for item in chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            why = item.verify_message or str(item)
            if "not yet valid" in why:
                return CloudTlsError(f"the certificate of {host} is not yet valid: the device clock is wrong "
                                     "(NTP? a Pi without a real-time clock boots in the past)")
            if "expired" in why:
                return CloudTlsError(f"the certificate of {host} has expired, or the device clock is far ahead: check the clock (NTP)")
            return CloudTlsError(f"TLS verification of {host} failed ({why}): check cloud.endpoint and the system CA certificates")
    return None
