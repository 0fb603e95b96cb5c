"""The emulated service, independent of HTTP: gateway checks, the action rules, and when a change is applied.

`prepare` answers every refusal at once; `run` applies the prepared change now or after `apply_after_next`'s
delay and decides what the client hears: the result, an error envelope after applying, or nothing at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.devtools.emulator import control
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.faces import create_face, delete_face
from agent.devtools.emulator.gateway import Credentials, RateLimiter, authenticate, check_version_and_region
from agent.devtools.emulator.groups import create_group, get_group_list
from agent.devtools.emulator.limits import ACCOUNT_CONDITIONS, ACTION_VERSIONS, MESSAGES
from agent.devtools.emulator.liveness import detect_live_face_accurate
from agent.devtools.emulator.persons import create_person, delete_person, get_person_base_info, get_person_group_info, get_person_list_num
from agent.devtools.emulator.search import search_faces

ACTIONS: dict[str, Callable[[Context, Params], Prepared]] = {
    "CreateFace": create_face, "DeleteFace": delete_face, "CreatePerson": create_person, "DeletePerson": delete_person,
    "GetPersonBaseInfo": get_person_base_info, "GetPersonGroupInfo": get_person_group_info, "GetPersonListNum": get_person_list_num,
    "CreateGroup": create_group, "GetGroupList": get_group_list, "SearchFaces": search_faces,
    "DetectLiveFaceAccurate": detect_live_face_accurate,
}


@dataclass(frozen=True)
class Answer:
    """What the client hears: a `result` (Response fields), an `error` envelope, or nothing (`drop`)."""

    kind: str
    result: dict[str, Any] | None = None
    error: ApiError | None = None


class Emulator:
    """One emulated account: its credentials, data and faults, and the request counters of GET /_control/stats."""

    def __init__(self, credentials: Credentials, ctx: Context) -> None:
        self.credentials = credentials
        self.ctx = ctx
        self.faults = ctx.faults
        self.state = ctx.state
        self.limiter = RateLimiter()
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self._stats)

    def refusal(self, action: str | None, error: ApiError) -> Answer:
        self.count(f"error.{action}.{error.code}")
        return Answer("error", error=error)

    # --- one request ---------------------------------------------------------------------------------

    def prepare(self, action: str, headers: dict[str, str], body: bytes) -> Prepared:
        """Every check that answers at once (ApiError), then the action's own validation."""
        authenticate(self.credentials, headers, body)
        condition = ACCOUNT_CONDITIONS.get(self.faults.account)
        if condition is not None:
            raise ApiError(*condition)
        version = check_version_and_region(headers)
        if action not in ACTIONS or version not in ACTION_VERSIONS.get(action, (version,)):
            raise ApiError("InvalidAction", f"{MESSAGES['InvalidAction']} ({action}, version {version})")
        allowed = self.faults.allowed_actions
        if allowed is not None and action not in allowed:
            raise ApiError("AuthFailure.UnauthorizedOperation", MESSAGES["AuthFailure.UnauthorizedOperation"])
        self.limiter.admit(action, self.faults.qps_limit, dict(self.faults.qps_limits))
        injected = self.faults.take_rule("fail_next", action)
        if injected is not None:
            raise ApiError(injected.options["code"], injected.options["message"])
        if self.faults.chance("error_rate"):
            raise ApiError("InternalError", "internal error (injected by the emulator)")
        try:
            params = json.loads(body)
        except ValueError:
            params = None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "The request body is not a JSON object.")
        return ACTIONS[action](self.ctx, Params(action, params))

    def run(self, action: str, prepared: Prepared, arrival: float) -> Answer:
        """Apply a prepared call (now, or `apply_after_next`'s ms after `arrival`) and choose the answer."""
        late = self.faults.take_rule("apply_after_next", action)
        if late is not None:
            self.state.begin_pending()
        try:
            if late is not None:
                time.sleep(max(0.0, arrival + float(late.options["ms"]) / 1000 - time.monotonic()))
            result = prepared.apply()
        except ApiError as exc:
            return self._late_silence(action) if late is not None and late.options["answer"] == "never" else self.refusal(action, exc)
        finally:
            self.state.release(prepared.person)
            if late is not None:
                self.state.end_pending()
        self.count(f"ok.{action}")
        if late is not None:
            self.count(f"applied_late.{action}")
            return self._late_silence(action) if late.options["answer"] == "never" else Answer("result", result)
        then_error = self.faults.take_rule("apply_then_error_next", action)
        if then_error is not None:
            self.count(f"applied_then_error.{action}")
            return self.refusal(action, ApiError(then_error.options["code"], then_error.options["message"]))
        delay = self.faults.take_rule("delay_next", action)
        if delay is not None:
            time.sleep(float(delay.options["ms"]) / 1000)
        if self.faults.take_rule("apply_then_drop_next", action) is not None:
            self.count(f"applied_then_dropped.{action}")
            return Answer("drop")
        return Answer("result", result)

    def _late_silence(self, action: str) -> Answer:
        self.count(f"never_answered.{action}")
        return Answer("drop")

    # --- control -------------------------------------------------------------------------------------

    def control(self, update: Any) -> dict[str, Any]:
        """POST /_control (control.ControlError for a wrong key or value)."""
        if control.apply(self.faults, update):
            with self._stats_lock:
                self._stats.clear()
        return {"ok": True}

    def settled_state(self, timeout_s: float) -> dict[str, Any]:
        """GET /_control/state?settled=1: the state once no late application is pending (or after `timeout_s`)."""
        pending = self.state.wait_settled(timeout_s)
        return {**self.state.snapshot(), "settled": pending == 0}
