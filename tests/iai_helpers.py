"""Helpers to drive the emulator from tests: control calls, stats and state, signed raw requests, the official SDK,
and a product client pointed at it."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from agent.iai.client import IaiClient
from agent.iai.signing import SERVICE, authorization
from agent.retry import RetryPolicy
from tests.conftest import EMU_ID, EMU_KEY

REGION = "ap-guangzhou"  # a real IAI region; 2020-03-03 requires one


def control(server: Any, **update: Any) -> None:
    """POST /_control (docs/emulator.md lists every key); a wrong key or value fails the test here."""
    response = requests.post(server.base_url + "/_control", json=update, timeout=5)
    assert response.status_code == 200, response.text


def stats(server: Any) -> dict[str, int]:
    return dict(requests.get(server.base_url + "/_control/stats", timeout=5).json())


def state(server: Any) -> dict[str, Any]:
    return dict(requests.get(server.base_url + "/_control/state", timeout=5).json())


def settled_state(server: Any, timeout: float = 30.0) -> dict[str, Any]:
    """The emulator's state once every late application (apply_after_next) has landed; fails if one is still pending."""
    data = dict(requests.get(server.base_url + "/_control/state", params={"settled": 1, "timeout": timeout}, timeout=timeout + 5).json())
    assert data["settled"], f"{data['pending']} late application(s) still pending after {timeout} s"
    return data


def faces_of(server: Any, person: str, settled: bool = False) -> list[str]:
    """The person's FaceIds in the order they were added (after late applications when `settled`)."""
    return list((settled_state(server) if settled else state(server))["persons"][person]["faces"])


def foreign_faces(server: Any) -> list[str]:
    """FaceIds added by another writer (fault other_writer_next), never by a request of the test."""
    return list(state(server)["foreign_faces"])


def signed_post(
    server: Any, action: str, params: dict[str, Any] | bytes, *, version: str = "2018-03-01", region: str = "",
    token: str | None = None, key: str = EMU_KEY, secret_id: str = EMU_ID, service: str = SERVICE,
    timestamp: int | None = None, timeout: float = 10.0,
) -> requests.Response:
    """One TC3-signed POST, built by hand (no client logic): for tests that need the raw exchange."""
    body = params if isinstance(params, bytes) else json.dumps(params).encode()
    host = server.base_url.split("://", 1)[1]
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {"Content-Type": "application/json", "Host": host, "X-TC-Action": action, "X-TC-Version": version,
               "X-TC-Timestamp": str(stamp)}
    if region:
        headers["X-TC-Region"] = region
    if token is not None:
        headers["X-TC-Token"] = token
    headers["Authorization"] = authorization(secret_id, key, service, stamp, headers=headers, signed=["content-type", "host"], body=body)
    return requests.post(server.base_url + "/", data=body, headers=headers, timeout=timeout)


def response_of(reply: requests.Response) -> dict[str, Any]:
    return dict(reply.json()["Response"])


def sdk_client(server: Any, version: str = "2020-03-03", region: str = REGION, token: str | None = None, key: str = EMU_KEY,
               timeout: int = 10) -> Any:
    """The official SDK's IaiClient (v20180301 or v20200303) pointed at the emulator."""
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    module = __import__(f"tencentcloud.iai.v{version.replace('-', '')}.iai_client", fromlist=["IaiClient"])
    host = server.base_url.removeprefix("http://")
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=host, reqTimeout=timeout))
    return module.IaiClient(credential.Credential(EMU_ID, key, token), region, profile)


def sdk_call(sdk: Any, action: str, params: dict[str, Any]) -> Any:
    """Call `action` through the SDK's own request model; the SDK's response model back."""
    models = __import__(sdk.__module__.rsplit(".", 1)[0] + ".models", fromlist=["models"])
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    return getattr(sdk, action)(request)


def sdk_error(sdk: Any, action: str, params: dict[str, Any]) -> str:
    """The error code the SDK raises for this call (the test fails if the call succeeds)."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        sdk_call(sdk, action, params)
    except TencentCloudSDKException as exc:
        return str(exc.code)
    raise AssertionError(f"{action} succeeded; an error was expected")


def client_for(server: Any, *, key: str = EMU_KEY, attempts: int = 4, deadline: float = 10.0, read_timeout: float = 5.0, **kw: Any) -> IaiClient:
    return IaiClient.connect(
        server.base_url, EMU_ID, key, read_timeout_s=read_timeout, connect_timeout_s=2.0,
        policy=RetryPolicy(max_attempts=attempts, deadline_s=deadline, base_s=0.01, max_s=0.05), **kw,
    )


def seed_person(client: IaiClient, person_id: str, image: bytes, group: str = "staff") -> str | None:
    client.create_group(group, group.title())
    from agent.iai.models import CreatePersonRequest

    return client.create_person(CreatePersonRequest(group, f"Person {person_id}", person_id, image=image)).face_id
