"""Working against the real IAI on day one: every error code decided, region, account health, TLS, credentials."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ErrorCode
from agent.iai.error_codes import DECISIONS
from agent.iai.errors import CloudTlsError, CloudUnavailable, OutcomeUnknown, error_from_code
from agent.iai.models import CreateFaceRequest
from agent.iai.transport import REQUEST_CLIENT, Credentials
from tests.agent_proc import command, listen, result_for, wait_until
from tests.broker import Broker
from tests.conftest import EMU_ID, EMU_KEY, FACE_JPEG, REPO
from tests.iai_helpers import client_for, control, stats

SDK = Path(__import__("tencentcloud").__file__).parent
# The common error codes of every Tencent Cloud API 3.0 service (the API 3.0 "common error codes" page).
COMMON_CODES = [
    "ActionOffline", "AuthFailure.InvalidAuthorization", "AuthFailure.InvalidSecretId", "AuthFailure.MFAFailure",
    "AuthFailure.SecretIdNotFound", "AuthFailure.SignatureExpire", "AuthFailure.SignatureFailure", "AuthFailure.TokenFailure",
    "AuthFailure.UnauthorizedOperation", "DryRunOperation", "FailedOperation", "InternalError", "InvalidAction", "InvalidParameter",
    "InvalidParameterValue", "InvalidRequest", "IpInBlacklist", "IpNotInWhitelist", "LimitExceeded", "MissingParameter", "NoSuchProduct",
    "NoSuchVersion", "RequestLimitExceeded", "RequestLimitExceeded.GlobalRegionUinLimitExceeded", "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded", "RequestSizeLimitExceeded", "ResourceInUse", "ResourceInsufficient", "ResourceNotFound",
    "ResourceUnavailable", "ResponseSizeLimitExceeded", "ServiceUnavailable", "UnauthorizedOperation", "UnknownParameter",
    "UnsupportedOperation", "UnsupportedProtocol", "UnsupportedRegion",
]


def sdk_codes() -> set[str]:
    codes: set[str] = set()
    for version in ("v20180301", "v20200303"):
        codes |= set(re.findall(r"^\w+ = '([^']+)'", (SDK / "iai" / version / "errorcodes.py").read_text(encoding="utf-8"), re.MULTILINE))
    return codes


def test_every_iai_and_common_error_code_has_a_decision() -> None:
    codes = sdk_codes()
    assert len(codes) > 90  # both versions' lists were read
    undecided = sorted((codes | set(COMMON_CODES)) - set(DECISIONS))
    assert not undecided, f"codes without a decision in agent/iai/error_codes.py: {undecided}"


@pytest.mark.parametrize(
    ("code", "result_code", "retryable", "ambiguous", "account", "fragment"),
    [
        ("FailedOperation.FaceQualityNotQualified", ErrorCode.CLOUD_QUALITY, True, False, None, "quality control"),
        ("FailedOperation.FaceSizeTooSmall", ErrorCode.FACE_TOO_SMALL, True, False, None, "move closer"),
        ("InvalidParameterValue.GroupIdNotExists", ErrorCode.CLOUD_REJECTED, False, False, None, "group g1 does not exist"),
        ("InvalidParameterValue.ImageEmptyError", ErrorCode.CLOUD_REJECTED, False, False, None, "empty"),
        ("FailedOperation.ImageResolutionTooSmall", ErrorCode.CLOUD_REJECTED, False, False, None, "64 px"),
        ("FailedOperation.UnKnowError", ErrorCode.CLOUD_UNAVAILABLE, True, True, None, "try again later"),
        ("ResourceUnavailable.Delivering", ErrorCode.CLOUD_UNAVAILABLE, True, False, None, "try again later"),
        ("ResourceUnavailable.Recover", ErrorCode.CLOUD_UNAVAILABLE, True, False, None, "try again later"),
        ("ResourceUnavailable.LowBalance", ErrorCode.CLOUD_REJECTED, False, False, "in_arrears", "top it up"),
        ("ResourceUnavailable.NotReady", ErrorCode.CLOUD_REJECTED, False, False, "not_activated", "activate IAI"),
        ("ResourceUnavailable.ChargeStatusException", ErrorCode.CLOUD_REJECTED, False, False, "in_arrears", "arrears"),
        ("ActionOffline", ErrorCode.CLOUD_REJECTED, False, False, None, "offline"),
        ("LimitExceeded", ErrorCode.CLOUD_REJECTED, False, False, None, "quota"),
        ("AuthFailure.SecretIdNotFound", ErrorCode.CLOUD_AUTH, False, False, "auth_failed", "tencentcloud_secret_id"),
        ("UnsupportedRegion", ErrorCode.CLOUD_REJECTED, False, False, "region", "cloud.region"),
    ],
)
def test_error_codes_that_need_their_own_answer(code: str, result_code: ErrorCode, retryable: bool, ambiguous: bool,
                                                account: str | None, fragment: str) -> None:
    error = error_from_code(code, "text from the cloud", "req-1", person="1001", group="g1")
    assert (error.code, error.retryable, error.ambiguous, error.account_status) == (result_code, retryable, ambiguous, account)
    assert fragment in error.message


def recording(client: Any) -> list[Any]:
    """Every request the client's session sends, as it went on the wire (headers and body)."""
    sent: list[Any] = []
    client.transport.session.hooks["response"].append(lambda response, *a, **k: sent.append(response.request))
    return sent


def test_requests_carry_region_request_client_and_create_group_pins_the_model(emulator: Any) -> None:
    c = client_for(emulator, version="2020-03-03", region="ap-guangzhou")
    sent = recording(c)
    c.create_group("staff", "Staff")
    request = sent[-1]
    assert request.headers["X-TC-Region"] == "ap-guangzhou" and request.headers["X-TC-RequestClient"] == REQUEST_CLIENT
    assert b'"FaceModelVersion":"3.0"' in request.body


def test_a_refused_session_token_is_read_again_once() -> None:
    from agent.devtools.emulator import make_server

    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, session_token="token-renewed", face_check=False)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        fresh = Credentials(EMU_ID, EMU_KEY, "token-renewed")
        c = client_for(server, session_token="token-expired", reload_credentials=lambda: fresh)
        c.create_group("g1", "G1")
        assert c.transport.credentials.session_token == "token-renewed"
        assert stats(server)["requests.CreateGroup"] == 2  # refused once (AuthFailure.TokenFailure), then accepted
    finally:
        server.shutdown()
        server.server_close()


def test_a_learnt_clock_offset_and_renewed_keys_both_stay() -> None:
    """Keys and offset are one object replaced whole: renewing one must carry the other over."""
    from agent.devtools.emulator import make_server

    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, session_token="token-renewed", face_check=False)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        c = client_for(server, session_token="token-expired", clock=lambda: time.time() - 1000,
                       reload_credentials=lambda: Credentials(EMU_ID, EMU_KEY, "token-renewed"))
        c.create_group("g1", "G1")  # refused for the clock and for the token, in some order; accepted third
        assert stats(server)["requests.CreateGroup"] == 3
        assert abs(c.transport.clock_offset_s - 1000) < 5 and c.transport.credentials.session_token == "token-renewed"
        control(server, reset_stats=True)
        c.get_group_list(limit=1)
        assert stats(server) == {"requests.GetGroupList": 1, "ok.GetGroupList": 1}  # signed right at once
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_token_is_read_again_from_the_folder_the_command_line_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--credentials-dir` reaches the running client as an argument: the process environment is never written."""
    import argparse
    import os

    from agent.app import build_cloud
    from agent.cli.common import load_config_for
    from agent.devtools.emulator import make_server
    from agent.iai.upload import NoJournal
    from agent.logs import setup_logging

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, session_token="token-renewed", face_check=False)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    folder = tmp_path / "credentials"
    folder.mkdir()
    for name, value in (("tencentcloud_secret_id", EMU_ID), ("tencentcloud_secret_key", EMU_KEY), ("tencentcloud_session_token", "token-expired")):
        (folder / name).write_text(value + "\n")
    (tmp_path / "agent.yaml").write_text(json.dumps({"cloud": {"endpoint": server.base_url}, "camera": {"type": "files", "path": str(tmp_path)},
                                                     "state_dir": str(tmp_path / "state")}))
    args = argparse.Namespace(config=str(tmp_path / "agent.yaml"), credentials_dir=folder, log_level="WARNING")
    try:
        config = load_config_for(args)
        assert "CREDENTIALS_DIRECTORY" not in os.environ
        client, _ = build_cloud(config, NoJournal(), args.credentials.environ())
        (folder / "tencentcloud_session_token").write_text("token-renewed\n")  # renewed where the keys were found
        client.create_group("g1", "G1")
        assert client.transport.credentials.session_token == "token-renewed"
        assert stats(server)["requests.CreateGroup"] == 2  # refused once, then accepted with the token read again
    finally:
        setup_logging("INFO", "text")  # load_config_for set the command's logging up
        server.shutdown()
        server.server_close()


def test_two_threads_refused_the_same_token_read_the_credentials_again_once() -> None:
    """The worker and the health check both refused: one read, and a slower read never replaces a newer one."""
    from agent.devtools.emulator import make_server

    server = make_server(secret_id=EMU_ID, secret_key=EMU_KEY, session_token="token-renewed", face_check=False)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    reads: list[str] = []

    def reload() -> Credentials:  # returns only once both threads' first attempts were refused
        reads.append(threading.current_thread().name)
        wait_until(lambda: stats(server).get("error.GetGroupList.AuthFailure.TokenFailure", 0) >= 2)
        return Credentials(EMU_ID, EMU_KEY, "token-renewed")

    try:
        c = client_for(server, session_token="token-expired", reload_credentials=reload)
        answers: dict[str, object] = {}
        threads = [threading.Thread(target=lambda: answers.update({threading.current_thread().name: c.get_group_list(limit=1)}), name=name)
                   for name in ("worker", "telemetry")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(answers) == ["telemetry", "worker"]  # both calls succeeded with the renewed token
        assert len(reads) == 1, reads
        assert stats(server)["requests.GetGroupList"] == 4  # each: refused once, then accepted
    finally:
        server.shutdown()
        server.server_close()


def test_each_thread_has_its_own_http_session_and_close_ends_them_all(emulator: Any) -> None:
    """requests.Session is not thread-safe: the worker's upload and the telemetry thread's health check run at once."""
    c = client_for(emulator)
    used: dict[str, Any] = {}

    def call() -> None:
        c.get_group_list(limit=1)
        used[threading.current_thread().name] = c.transport.session

    threads = [threading.Thread(target=call, name=name) for name in ("worker", "telemetry")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(used) == ["telemetry", "worker"] and used["worker"] is not used["telemetry"]
    assert all(len(s.get_adapter(emulator.base_url).poolmanager.pools) == 1 for s in used.values())  # a kept-alive connection each
    c.close()
    assert all(len(s.get_adapter(emulator.base_url).poolmanager.pools) == 0 for s in used.values())


# --- TLS: only certificate errors are configuration errors -------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificate(folder: Path, start: str | None = None) -> tuple[Path, Path, Path]:
    """(CA, server certificate, server key) for 127.0.0.1; `start` (YYYYMMDDHHMMSSZ) moves its validity into the future."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr", cwd=folder)
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("01\n")
    (folder / "ca.cnf").write_text(
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nserial=serial\nnew_certs_dir=.\ndefault_md=sha256\npolicy=p\n"
        "copy_extensions=copy\n[p]\ncommonName=supplied\n")
    dates = ["-startdate", start, "-enddate", "20991231000000Z"] if start else ["-days", "2"]
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "server.csr", "-out", "server.pem",
            "-extfile", "ext", *dates, cwd=folder)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


class TlsServer:
    """A TLS listener on loopback: it answers the handshake, reads the request, then closes without an answer."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)  # the request arrived: now it is gone without an answer
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.sock.close()


def tls_client(server: TlsServer, ca: Path | None, monkeypatch: pytest.MonkeyPatch) -> Any:
    if ca is not None:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    c = client_for(type("S", (), {"base_url": f"https://127.0.0.1:{server.port}"})(), attempts=1)
    return c


def test_an_unknown_certificate_is_a_configuration_error_not_an_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, cert, key = certificate(tmp_path / "pki")
    server = TlsServer(cert, key)
    try:
        with pytest.raises(CloudTlsError) as info:
            tls_client(server, None, monkeypatch).get_person_base_info("1001")  # the system CAs do not know this CA
        assert not info.value.retryable and "TLS verification" in info.value.message
    finally:
        server.close()


def test_a_certificate_not_yet_valid_points_at_the_device_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = certificate(tmp_path / "pki", start="20400101000000Z")
    server = TlsServer(cert, key)
    try:
        with pytest.raises(CloudTlsError, match="device clock is wrong"):
            tls_client(server, ca, monkeypatch).get_person_base_info("1001")
    finally:
        server.close()


def test_a_tls_connection_lost_after_sending_leaves_a_create_face_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = certificate(tmp_path / "pki")
    server = TlsServer(cert, key)
    try:
        with pytest.raises(OutcomeUnknown):
            tls_client(server, ca, monkeypatch).create_face(CreateFaceRequest("1001", [FACE_JPEG]))
        with pytest.raises(CloudUnavailable) as info:  # a read is simply retried, then reported
            tls_client(server, ca, monkeypatch).get_person_base_info("1001")
        assert not isinstance(info.value, CloudTlsError)
    finally:
        server.close()


# --- account health ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "status", "code"), [("in_arrears", "in_arrears", "cloud_rejected"),
                                                          ("not_activated", "not_activated", "cloud_rejected")])
def test_an_unusable_account_is_in_the_state_and_commands_are_refused_at_once(
    broker: Broker, make_agent: Any, emulator: Any, person: str, condition: str, status: str, code: str,
) -> None:
    agent = make_agent(broker, cloud={"health_interval_s": 5})
    listener = listen(broker, agent.base)
    try:
        control(emulator, account=condition)
        state = listener.get_json(f"{agent.base}/state", timeout=30, where=lambda s: (s.get("cloud") or {}).get("status") == status)
        assert state["cloud"]["cloud_code"]
        listener.publish(f"{agent.base}/enroll", command("acct-1", person))
        refused = result_for(listener, agent.base, "acct-1")
        assert (refused["status"], refused["error"]["code"]) == ("failed", code) and refused["error"]["cloud_code"]
        progress = []
        while True:
            try:
                progress.append(listener.get_json(f"{agent.base}/enroll/progress", timeout=0.5)["state"])
            except TimeoutError:
                break
        assert "capturing" not in progress  # no face was captured that could not be uploaded
        control(emulator, account="ok")
        listener.get_json(f"{agent.base}/state", timeout=30, where=lambda s: (s.get("cloud") or {}).get("status") == "ok")
        listener.publish(f"{agent.base}/enroll", command("acct-2", person))
        assert result_for(listener, agent.base, "acct-2")["status"] == "succeeded"
    finally:
        control(emulator, account="ok")
        listener.close()


def test_refused_keys_show_as_auth_failed(broker: Broker, make_agent: Any, person: str) -> None:
    agent = make_agent(broker, start=False)
    agent.env["TENCENTCLOUD_SECRET_KEY"] = "a-revoked-key-000000000"
    agent.start(broker)
    listener = listen(broker, agent.base)
    try:
        listener.get_json(f"{agent.base}/state", timeout=30, where=lambda s: (s.get("cloud") or {}).get("status") == "auth_failed")
        listener.publish(f"{agent.base}/enroll", command("key-1", person))
        assert result_for(listener, agent.base, "key-1")["error"]["code"] == "cloud_auth"
    finally:
        listener.close()


# --- the key's CAM policy -----------------------------------------------------------------------------------------------


def readme_cam_policy() -> list[str]:
    """The actions of the CAM policy in README's "Before your first real enrollment", without the `iai:` prefix."""
    readme = (REPO / "README.md").read_text()
    start = readme.index('{"version": "2.0"', readme.index("### Before your first real enrollment"))
    policy = json.loads(readme[start:readme.index("```", start)])
    actions = [a for statement in policy["statement"] for a in statement["action"]]
    assert all(a.startswith("iai:") for a in actions)
    return [a.removeprefix("iai:") for a in actions]


def readme_liveness_actions() -> list[str]:
    """The actions the README adds to the CAM policy for `liveness.mode: cloud`, without the `iai:` prefix."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Before your first real enrollment"):readme.index("### Liveness and duplicate people")]
    return [a.removeprefix("iai:") for a in re.findall(r'With `liveness\.mode: cloud`\s+add `"(iai:\w+)"`', section)]


def test_the_readme_cam_policy_allows_everything_the_device_does_and_no_more(
    broker: Broker, make_agent: Any, emulator: Any, person: str,
) -> None:
    allowed = readme_cam_policy()
    used = set(re.findall(r'transport\.call\("(\w+)"', (REPO / "agent" / "iai" / "client.py").read_text())) - {"CreateGroup"}
    assert readme_liveness_actions() == ["DetectLiveFaceAccurate"]  # called only with liveness.mode cloud
    assert sorted(allowed) == sorted(used - {"DetectLiveFaceAccurate"})  # CreateGroup is for the demo and tests: a device never creates groups
    control(emulator, allowed_actions=allowed)
    agent = make_agent(broker, cloud={"health_interval_s": 5})
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("cam-1", "2002", create_person={"group_id": "staff", "person_name": "Ada"}))
        assert result_for(listener, agent.base, "cam-1")["status"] == "succeeded"
        control(emulator, apply_then_drop_next=1)  # a lost answer: attributed with GetPersonGroupInfo and SearchFaces
        listener.publish(f"{agent.base}/enroll", command("cam-2", person))
        assert result_for(listener, agent.base, "cam-2")["status"] == "succeeded"
        listener.publish(f"{agent.base}/enroll", command("cam-3", "3003", dry_run=True,
                                                         create_person={"group_id": "staff", "person_name": "Bo"}))
        assert "error" not in result_for(listener, agent.base, "cam-3")  # GetPersonListNum: the group exists
        listener.publish(f"{agent.base}/delete", json.dumps({"id": "cam-4", "person_id": person, "enrollment_id": "cam-2"}))
        assert listener.get_json(f"{agent.base}/delete/result", 30, where=lambda r: r["id"] == "cam-4")["status"] == "succeeded"
        # the account check (GetGroupList) passes too; a state retained by an earlier device of this id may come first
        listener.get_json(f"{agent.base}/state", timeout=30, where=lambda s: (s.get("cloud") or {}).get("status") == "ok")
        assert stats(emulator).get("requests.GetGroupList", 0) >= 1
        assert not [k for k in stats(emulator) if "UnauthorizedOperation" in k]
    finally:
        control(emulator, allowed_actions=None)
        listener.close()


@pytest.mark.parametrize("with_liveness_action", [True, False])
def test_liveness_needs_its_action_in_the_cam_policy(broker: Broker, make_agent: Any, emulator: Any, person: str,
                                                     with_liveness_action: bool) -> None:
    control(emulator, allowed_actions=readme_cam_policy() + (readme_liveness_actions() if with_liveness_action else []))
    agent = make_agent(broker, liveness={"mode": "cloud"}, cloud={"region": "ap-guangzhou"})
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("live-1", person))
        result = result_for(listener, agent.base, "live-1")
        if with_liveness_action:
            assert result["status"] == "succeeded" and result["liveness"]["scores"] == [90.0]
            assert not [k for k in stats(emulator) if "UnauthorizedOperation" in k]
        else:
            assert (result["status"], result["error"]["code"]) == ("failed", "cloud_auth") and "grant it in CAM" in result["error"]["message"]
            assert "requests.CreateFace" not in stats(emulator)  # nothing written without the check
    finally:
        control(emulator, allowed_actions=None)
        listener.close()


def test_a_policy_without_search_faces_leaves_a_lost_answer_unknown(broker: Broker, make_agent: Any, emulator: Any, person: str) -> None:
    control(emulator, allowed_actions=[a for a in readme_cam_policy() if a != "SearchFaces"], apply_then_drop_next=1)
    agent = make_agent(broker)
    listener = listen(broker, agent.base)
    try:
        listener.publish(f"{agent.base}/enroll", command("cam-5", person))
        result = result_for(listener, agent.base, "cam-5")
        assert (result["status"], result["error"]["code"], result["face_ids"]) == ("unknown", "outcome_unknown", [])
        assert len(result["candidate_face_ids"]) == 1 and stats(emulator)["error.SearchFaces.AuthFailure.UnauthorizedOperation"] >= 1
    finally:
        control(emulator, allowed_actions=None)
        listener.close()
