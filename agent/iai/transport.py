"""Signed HTTPS to one IAI endpoint: one attempt with its failure classified, and the one retry loop around it.

Every failure says whether the request reached the service. Reads are resent after any transient failure
(`CloudError.resend`); a refusal, including one of what the images show, is never resent.
CreateFace and CreatePerson are not idempotent: they are retried only after a failure that proves the
request was not applied (never connected, throttled, refused); after a lost answer or an ambiguous server
error they raise `OutcomeUnknown` at once and are never sent again — the caller reconciles instead.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from agent import __version__
from agent.iai.errors import (
    ClockSkewError,
    CloudError,
    CloudRateLimited,
    CloudRejected,
    CloudUnavailable,
    ConflictError,
    OutcomeUnknown,
    TokenExpired,
    error_from_code,
)
from agent.iai.limits import MAX_BODY_BYTES, ImageRejected
from agent.iai.signing import SERVICE, authorization
from agent.iai.wire import never_sent, read_capped, reason_of, tls_problem
from agent.retry import RetryPolicy, TokenBucket

log = logging.getLogger("agent.iai")

CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = ["content-type", "host", "x-tc-action"]
REQUEST_CLIENT = f"faceagent/{__version__}"
CONFLICT_WAIT_S = 0.5  # X-TC-RequestClient: lets Tencent support trace the calls


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class Signing:
    """What a signature is made of besides the request: the keys and the learnt clock offset.

    Replaced as one object under the transport's lock and read once per attempt, so an attempt is signed
    with one set of keys and one offset, whatever another thread renews meanwhile.
    """

    credentials: Credentials
    clock_offset_s: float = 0.0  # service time minus device time, learnt from a SignatureExpire answer


class Transport:
    """Keep-alive HTTP, TC3 signatures, the client-side rate limit and the retry policy. Thread-safe.

    Each thread has its own `requests.Session` (a session is not safe to share: the worker's uploads and the
    telemetry thread's health check run at once); the keys and the clock offset are one `Signing`, swapped
    under a lock.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        version: str,
        region: str = "",
        language: str = "",
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 15.0,
        policy: RetryPolicy | None = None,
        limiter: TokenBucket | None = None,
        reload_credentials: Callable[[], Credentials] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"cloud endpoint {endpoint!r} is not an http(s) URL")
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.host = parts.netloc
        self.version = version
        self.region = region
        self.language = language
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.policy = policy or RetryPolicy()
        self.limiter = limiter
        self._reload = reload_credentials
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._signing = Signing(credentials)
        self._signing_lock = threading.Lock()  # held to replace `_signing`; readers take the reference without it
        self.last_date: tuple[float, float] | None = None  # (the service's time from its last Date header, the device's then)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []  # every thread's (the daemon's are long-lived), for close()
        self._sessions_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """This thread's keep-alive session (proxies from the environment, trust_env; TLS verified), made on first use."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = REQUEST_CLIENT
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    @property
    def credentials(self) -> Credentials:
        return self._signing.credentials

    @credentials.setter
    def credentials(self, credentials: Credentials) -> None:
        with self._signing_lock:
            self._signing = replace(self._signing, credentials=credentials)

    @property
    def clock_offset_s(self) -> float:
        return self._signing.clock_offset_s

    def now(self) -> float:
        """The service's time as far as the device knows it (device clock plus the learnt offset)."""
        return self._clock() + self._signing.clock_offset_s

    def _renew_credentials(self, refused: Credentials) -> None:
        """Read the keys again, unless another thread already replaced the `refused` ones (then those are used).

        The read happens under the lock: two threads refused at once read once, and an older read can never
        overwrite a newer one. It reads a few small local files.
        """
        assert self._reload is not None
        with self._signing_lock:
            if self._signing.credentials is refused:
                self._signing = replace(self._signing, credentials=self._reload())

    # --- one attempt -------------------------------------------------------------------------------

    def _headers(self, action: str, body: bytes, signing: Signing, version: str | None = None) -> dict[str, str]:
        creds = signing.credentials
        timestamp = int(self._clock() + signing.clock_offset_s)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": version or self.version,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-RequestClient": REQUEST_CLIENT,
        }
        if self.region:
            headers["X-TC-Region"] = self.region
        if self.language:
            headers["X-TC-Language"] = self.language
        if creds.session_token:
            headers["X-TC-Token"] = creds.session_token
        headers["Authorization"] = authorization(creds.secret_id, creds.secret_key, SERVICE, timestamp, headers=headers,
                                                 signed=SIGNED_HEADERS, body=body)
        return headers

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[requests.Response, bytes]:
        """POST and read the answer within a total deadline (connect plus read timeout) and MAX_ANSWER_BYTES.

        requests' timeouts bound each socket read, not the answer: a server (or a middlebox) sending a byte every
        few seconds holds the worker for as long as it likes, and a body is read whole into memory. The exchange
        runs in a helper thread the caller stops waiting for at the deadline (the thread ends with the connection);
        the body is read in chunks up to the cap. Redirects are never followed: a followed 307/308 sends a write again.
        """
        total = self.timeout[0] + self.timeout[1]
        box: dict[str, Any] = {}
        session = self.session  # this thread's: the helper uses it while this thread waits

        def exchange() -> None:
            try:
                response = session.post(self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False,
                                             stream=True)
                with response:
                    box["content"] = read_capped(response)
                    box["response"] = response
            except Exception as exc:  # handed to the caller's thread
                box["error"] = exc

        helper = threading.Thread(target=exchange, name="faceagent-http", daemon=True)
        helper.start()
        helper.join(total)
        if helper.is_alive():
            self._local.session = None  # the abandoned helper keeps that session; this thread's next attempt opens another
            raise OutcomeUnknown(f"no complete answer from {self.host} within {total:g} s")
        if "error" in box:
            raise box["error"]
        return box["response"], box["content"]

    def attempt(self, action: str, body: bytes, person: str = "", group: str = "", *, signing: Signing | None = None,
                version: str | None = None) -> dict[str, Any]:
        """POST once; the `Response` object, or a typed error saying whether the request reached the service.

        `signing`: the keys and clock offset to sign with, read once by the caller (default: the current ones);
        `version`: the API version of an action only one version has (default: the configured one).
        """
        headers = self._headers(action, body, signing or self._signing, version)
        try:
            response, content = self._post(body, headers)
        except requests.exceptions.SSLError as exc:
            refused = tls_problem(exc, self.host)
            if refused is not None:
                raise refused from None
            raise OutcomeUnknown(f"TLS connection to {self.host} failed: {reason_of(exc)}") from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) as exc:
            if never_sent(exc):
                raise CloudUnavailable(f"cannot connect to {self.host}: {reason_of(exc)}") from None
            raise OutcomeUnknown(f"connection to {self.host} lost before the answer: {reason_of(exc)}") from None
        except requests.exceptions.Timeout:
            raise OutcomeUnknown(f"no answer from {self.host} within {self.timeout[1]:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise OutcomeUnknown(f"request to {self.host} failed: {reason_of(exc)}") from None
        server = self._server_time(response)
        if server is not None:
            self.last_date = (server, self._clock())
        if response.status_code == 429:
            raise CloudRateLimited(f"HTTP 429 from {self.host}: too many requests")
        if response.status_code >= 500:
            raise OutcomeUnknown(f"HTTP {response.status_code} from {self.host}")
        if response.status_code != 200:  # a redirect or a 4xx may come after a middlebox forwarded the request
            raise CloudRejected(f"HTTP {response.status_code} from {self.host}: check cloud.endpoint", retryable=False, ambiguous=True)
        try:
            data = json.loads(content)["Response"]
            if not isinstance(data, dict) or not isinstance(data.get("Error") or {}, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested beyond the parser's depth
            raise OutcomeUnknown(f"unreadable answer from {self.host}") from None
        error = data.get("Error")
        if error:
            message = " ".join(str(error.get("Message", "")).split())  # one line: an answer's text cannot forge log lines
            failure = error_from_code(str(error.get("Code", "")), message, data.get("RequestId"), person, group)
            if isinstance(failure, ClockSkewError):
                self._learn_clock_offset(response)
            raise failure
        return data

    @staticmethod
    def _server_time(response: requests.Response) -> float | None:
        """The service's time from its HTTP `Date` header (1 s resolution), or None without a readable one."""
        try:
            return parsedate_to_datetime(response.headers["Date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    def _learn_clock_offset(self, response: requests.Response) -> None:
        """The offset from the service's `Date` header (SignatureExpire's text does not carry the service time)."""
        server = self._server_time(response)
        if server is None:
            return
        with self._signing_lock:
            self._signing = replace(self._signing, clock_offset_s=server - self._clock())
        log.warning("device clock is %+.0f s off the cloud's: re-signing with corrected time; fix the clock (NTP)", -self.clock_offset_s)

    # --- the retry loop ------------------------------------------------------------------------------

    def call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        idempotent: bool,
        person: str = "",
        group: str = "",
        before_attempt: Callable[[], None] | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """POST one action with bounded retries; return its `Response` object, or raise the error that ended it.

        `before_attempt` runs before every attempt (a non-idempotent action takes its snapshot there); `version`
        overrides the configured API version for an action only one version has (DetectLiveFaceAccurate).
        Every decision about a failure is in `_after_failure`.
        """
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(body) > MAX_BODY_BYTES:
            raise ImageRejected(f"the {action} request is {len(body)} bytes: IAI allows at most 10 MB; send fewer or smaller images")
        retry = _Retry(action, idempotent, self._monotonic(), self._signing)
        while True:
            retry.attempt += 1
            remaining = self.policy.deadline_s - (self._monotonic() - retry.started)
            if self.limiter is not None and not self.limiter.acquire(timeout=max(0.0, remaining)):
                raise CloudRateLimited(f"local rate limit: no {action} slot within the {self.policy.deadline_s:.0f} s deadline")
            if before_attempt is not None:
                before_attempt()
            t0 = self._monotonic()
            retry.signing = self._signing  # read once: this attempt's keys and offset
            try:
                data = self.attempt(action, body, person, group, signing=retry.signing, version=version)
            except CloudError as exc:
                self._sleep(self._after_failure(retry, exc))
                continue
            if self.limiter is not None:
                self.limiter.speed_up()
            log.info("%s ok in %.0f ms (attempt %d, RequestId %s)", action, (self._monotonic() - t0) * 1000, retry.attempt, data.get("RequestId"))
            return data

    def _after_failure(self, retry: _Retry, exc: CloudError) -> float:
        """How long to wait before the next attempt; raises when there must be none."""
        action = retry.action
        if isinstance(exc, ClockSkewError):
            log.warning("%s: %s (RequestId %s)", action, exc.message, exc.request_id)
            if retry.resigned:
                raise exc
            retry.resigned, retry.attempt = True, retry.attempt - 1  # refused, not applied: one re-signed try, not counted
            return 0.0
        if isinstance(exc, TokenExpired) and not retry.reloaded and self._reload is not None:
            log.warning("%s: the session token was refused; reading the credentials again and retrying once", action)
            self._renew_credentials(retry.signing.credentials)
            retry.reloaded, retry.attempt = True, retry.attempt - 1
            return 0.0
        if not retry.idempotent and (isinstance(exc, OutcomeUnknown) or exc.ambiguous):
            log.warning("%s attempt %d: outcome unknown (%s); not sent again", action, retry.attempt, exc.message)
            if isinstance(exc, OutcomeUnknown):
                raise exc
            raise OutcomeUnknown(f"{action}: {exc.message}", cloud_code=exc.cloud_code, request_id=exc.request_id) from None
        log.log(logging.WARNING if exc.resend else logging.INFO, "%s attempt %d failed: %s %s (RequestId %s)",
                action, retry.attempt, exc.cloud_code or "", exc.message, exc.request_id)
        if not exc.resend:  # a refusal (of the request or of what its images show): the same bytes get the same answer
            raise exc
        wait = self.policy.backoff(retry.attempt - 1)
        if isinstance(exc, ConflictError):
            wait = max(wait, CONFLICT_WAIT_S)  # the other change on the person takes about a second to apply
        if isinstance(exc, CloudRateLimited):
            wait = max(wait, 1.0)  # IAI's limit is per second: an immediate retry only adds load
            if self.limiter is not None:
                self.limiter.slow_down()
        elapsed = self._monotonic() - retry.started
        if retry.attempt >= self.policy.max_attempts or elapsed + wait > self.policy.deadline_s:
            raise self._gave_up(action, exc, retry.attempt, elapsed)
        return wait

    @staticmethod
    def _gave_up(action: str, last: CloudError, attempts: int, elapsed: float) -> CloudError:
        """The error after the last retry; every failure before it was one that left nothing applied."""
        if isinstance(last, CloudRateLimited):
            return last
        return CloudUnavailable(
            f"{action} failed after {attempts} attempt(s) in {elapsed:.1f} s: {last.message}",
            cloud_code=last.cloud_code, request_id=last.request_id, retryable=True,
        )


@dataclass
class _Retry:
    """Where one call stands in its retry budget."""

    action: str
    idempotent: bool
    started: float
    signing: Signing
    attempt: int = 0
    resigned: bool = False  # a SignatureExpire was answered by re-signing once
    reloaded: bool = False  # a TokenFailure was answered by reading the credentials again once
