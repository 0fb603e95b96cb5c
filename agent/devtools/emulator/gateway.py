"""What the API 3.0 gateway checks before any action runs: signature, token, clock, version, region, rate.

The TC3 algorithm is agent/iai/signing.py (verified independently against the official SDK's `sign_tc3`); the
rules around it (which headers, which service, the 5-minute window, the messages) are the documentation's.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError
from agent.iai.signing import parse_authorization, verify


@dataclass(frozen=True)
class Credentials:
    """The one key pair the emulated account accepts; `session_token` set means temporary credentials."""

    secret_id: str
    secret_key: str
    session_token: str | None = None


def _error(code: str, detail: str = "") -> ApiError:
    return ApiError(code, detail or limits.MESSAGES[code])


def authenticate(credentials: Credentials, headers: dict[str, str], body: bytes) -> None:
    """Check the TC3 signature of one request (lower-cased `headers`); ApiError with the service's code otherwise."""
    parsed = parse_authorization(headers.get("authorization", ""))
    if parsed is None:
        raise _error("AuthFailure.InvalidAuthorization")
    if parsed.secret_id != credentials.secret_id:
        raise _error("AuthFailure.SecretIdNotFound")
    for required in ("content-type", "host"):
        if required not in parsed.signed_headers:
            raise _error("AuthFailure.SignatureFailure", f"The header {required} must be signed.")
    if headers.get("content-type", "").lower() not in limits.CONTENT_TYPES:
        raise ApiError("InvalidParameter", "Content-Type must be application/json.")
    try:
        timestamp = int(headers.get("x-tc-timestamp", ""))
    except ValueError:
        raise ApiError("MissingParameter", "The request is missing a required parameter `Timestamp`.") from None
    if abs(int(time.time()) - timestamp) > limits.TIMESTAMP_WINDOW_S:
        raise _error("AuthFailure.SignatureExpire")
    # The service signs with its own name: a credential scoped to another service cannot match.
    if parsed.service != limits.SERVICE or not verify(parsed, credentials.secret_key, timestamp, headers, body):
        raise _error("AuthFailure.SignatureFailure")
    if credentials.session_token is not None:
        token = headers.get("x-tc-token", "")
        if not hmac.compare_digest(token.encode(), credentials.session_token.encode()):
            raise _error("AuthFailure.TokenFailure")


def check_version_and_region(headers: dict[str, str]) -> str:
    """The X-TC-Version (it must exist) and X-TC-Region (required by 2020-03-03, one of IAI's regions when sent)."""
    version = headers.get("x-tc-version", "")
    if version not in limits.VERSIONS:
        raise _error("NoSuchVersion", f"The API version `{version}` does not exist.")
    region = headers.get("x-tc-region", "")
    if not region and version in limits.VERSIONS_REQUIRING_REGION:
        raise ApiError("MissingParameter", "The request is missing a required parameter `Region`.")
    if region and region not in limits.REGIONS:
        raise _error("UnsupportedRegion")
    return version


class RateLimiter:
    """RequestLimitExceeded above a number of requests in any one-second window, over all actions or per action."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[str | None, deque[float]] = {}

    def admit(self, action: str, overall: float, per_action: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            for key, limit in ((None, overall), (action, per_action.get(action, 0.0))):
                if limit <= 0:
                    continue
                recent = self._recent.setdefault(key, deque())
                while recent and now - recent[0] > 1.0:
                    recent.popleft()
                if len(recent) >= limit:
                    raise ApiError("RequestLimitExceeded", f"Your current request times equals to `{len(recent) + 1}` in a second, "
                                                           f"which exceeds the frequency limit `{limit:g}` for a second.")
            for key, limit in ((None, overall), (action, per_action.get(action, 0.0))):
                if limit > 0:
                    self._recent[key].append(now)
