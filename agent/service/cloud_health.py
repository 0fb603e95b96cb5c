"""Is the cloud account usable? A cheap read at start-up and every `cloud.health_interval_s`, published in `base/state`.

Status: `ok`, `auth_failed` (keys refused), `in_arrears`, `not_activated`, `suspended`, `region` (IAI not offered
in cloud.region), `unreachable`, `error`. While the account is unusable, commands are answered at once with
its error instead of capturing faces that cannot be uploaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.errors import ErrorCode
from agent.iai.client import IaiClient
from agent.iai.errors import CloudAuthError, CloudError, CloudUnavailable, TokenExpired
from agent.service.result import ResultError, iso_now
from agent.service.telemetry import DeviceState

log = logging.getLogger(__name__)

BLOCKING = frozenset({"auth_failed", "in_arrears", "not_activated", "suspended", "region"})
RECHECK_BEFORE_REFUSING_S = 30.0  # a stale verdict is checked again before a command is refused on it


class CloudHealth:
    def __init__(self, *, client: IaiClient, device: DeviceState, changed: Callable[[], None]) -> None:
        self.client = client
        self.device = device
        self._changed = changed
        self._checked = 0.0
        self._error: CloudError | None = None

    def check(self) -> dict[str, Any]:
        """One cheap read (GetGroupList, one entry); the verdict is stored in the device state."""
        try:
            self.client.get_group_list(limit=1)
        except CloudError as exc:
            status = exc.account_status or ("unreachable" if isinstance(exc, CloudUnavailable) else "error")
            verdict = {"status": status, "message": exc.message, "cloud_code": exc.cloud_code, "checked_at": iso_now()}
            self._error = exc
        else:
            verdict = {"status": "ok", "checked_at": iso_now()}
            self._error = None
        self._checked = time.monotonic()
        previous = (self.device.snapshot().get("cloud") or {}).get("status")
        self.device.set(cloud=verdict)
        if previous != verdict["status"]:
            log.log(logging.INFO if verdict["status"] == "ok" else logging.ERROR, "cloud account: %s%s", verdict["status"],
                    f" ({verdict['message']})" if "message" in verdict else "")
            self._changed()
        return verdict

    def noticed(self, exc: CloudError) -> None:
        """A job's call said something about the account: record it without waiting for the next check.

        Not a refused session token: temporary credentials rotate, so one TokenFailure the job could not get past
        says nothing about the next call (the health check records one that lasts)."""
        if isinstance(exc, TokenExpired):
            return
        if exc.account_status and (self.device.snapshot().get("cloud") or {}).get("status") != exc.account_status:
            self._error, self._checked = exc, time.monotonic()
            self.device.set(cloud={"status": exc.account_status, "message": exc.message, "cloud_code": exc.cloud_code,
                                   "checked_at": iso_now()})
            self._changed()

    def refusal(self) -> ResultError | None:
        """The error to answer a command with while the account is unusable, else None."""
        status = (self.device.snapshot().get("cloud") or {}).get("status")
        if status not in BLOCKING:
            return None
        if isinstance(self._error, TokenExpired) or time.monotonic() - self._checked > RECHECK_BEFORE_REFUSING_S:
            status = self.check()["status"]  # it may have been fixed (topped up, key replaced) since
        if status not in BLOCKING or self._error is None:
            return None
        code = ErrorCode.CLOUD_AUTH if isinstance(self._error, CloudAuthError) else ErrorCode.CLOUD_REJECTED
        return ResultError.of(code, f"the cloud account cannot be used: {self._error.message}", self._error.cloud_code)
