"""Secrets, Authorization headers and image data never reach a log line, whatever the format."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import uuid
from pathlib import Path
from typing import TextIO

import pytest

from agent.logs import SECRETS, redact, setup_logging

SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
MQTT_PASSWORD = "hunter2-mqtt-pass"
AUTH = (
    "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
    "SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
)
IMAGE_B64 = base64.b64encode(bytes(range(256)) * 8).decode()


@pytest.fixture(params=["text", "json"])
def captured(request: pytest.FixtureRequest) -> io.StringIO:
    stream = io.StringIO()
    SECRETS.add(SECRET_KEY, MQTT_PASSWORD)
    setup_logging("DEBUG", request.param, stream)
    yield stream
    setup_logging("INFO", "text")


def test_secrets_logged_on_purpose_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("faceagent.test")
    log.debug("secret key is %s", SECRET_KEY)
    log.debug(f"mqtt password={MQTT_PASSWORD}")
    log.debug("headers: %r", {"Authorization": AUTH, "Host": "iai.tencentcloudapi.com"})
    log.debug("Authorization: %s", AUTH)
    log.debug("body: %s", json.dumps({"PersonId": "1001", "Images": [IMAGE_B64]}))
    log.debug("raw image %s", IMAGE_B64)
    log.debug("short image field %s", '{"jpeg_b64": "AAAA"}')
    try:
        raise ValueError(f"failed with key {SECRET_KEY}")
    except ValueError:
        log.exception("while signing")
    SECRETS.add("token-with\nline-break")
    log.warning("bad header value: %r", "token-with\nline-break")  # an HTTP library quoting the value it refused
    out = captured.getvalue()
    for leaked in ("token-with", SECRET_KEY, MQTT_PASSWORD, "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168", IMAGE_B64[:120], '"AAAA"'):
        assert leaked not in out
    assert "1001" in out  # ordinary data survives
    assert "iai.tencentcloudapi.com" in out
    assert out.count("\n") >= 8


def test_an_app_built_without_the_cli_redacts_its_own_secrets(tmp_path: Path) -> None:
    """Redaction must not depend on who built the App: a test, a tool or a future command redact the same."""
    from agent.app import App
    from agent.config import config_from_mapping

    key, password = f"key-{uuid.uuid4().hex}", f"mqtt-{uuid.uuid4().hex}"  # never seen by this process before
    environ = {"TENCENTCLOUD_SECRET_ID": "AKIDapptest", "TENCENTCLOUD_SECRET_KEY": key, "FACEAGENT_MQTT_PASSWORD": password}
    config = config_from_mapping({"state_dir": str(tmp_path), "camera": {"type": "files", "path": str(tmp_path)}}, environ)
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    try:
        App(config, secrets_from=environ)
        logging.getLogger("faceagent.test").error("refused: key %s, broker password %s", key, password)
    finally:
        setup_logging("INFO", "text")
    out = stream.getvalue()
    assert "refused: key <redacted>, broker password <redacted>" in out and key not in out and password not in out


def test_redact_keeps_ordinary_text() -> None:
    for text in ("enrolled person 1001 on cam-01 in 1234 ms (RequestId 07d63403-a199-4bbe-b9e0-692356ac738d)",
                 "enroll command None rejected: sig: signed commands are required on this device",
                 "design: a word that ends in sig is not a signature"):
        assert redact(text) == text


def test_command_signatures_are_redacted_in_dicts_json_and_bare_hex() -> None:
    digest = "3f2a9c0e7b1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
    for text in (f"{{'sig': '{digest}'}}", json.dumps({"id": "a", "sig": digest}), f"sig={digest}", f"signature: {digest}"):
        assert digest not in redact(text) and "<redacted>" in redact(text)


def journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TextIO:
    """A stream that $JOURNAL_STREAM names by device and inode, as systemd sets it for a service's stderr."""
    stream = (tmp_path / "journal").open("w+")
    info = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    return stream


def test_under_journald_lines_carry_their_priority_and_no_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = journal_file(tmp_path, monkeypatch)
    setup_logging("DEBUG", "text", stream)
    log = logging.getLogger("faceagent")
    log.debug("detail")
    log.info("hello")
    log.warning("clock off")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("job failed")
    log.critical("stopping")
    stream.seek(0)
    lines = stream.read().splitlines()
    assert lines[:3] == ["<7>DEBUG faceagent: detail", "<6>INFO faceagent: hello", "<4>WARNING faceagent: clock off"]
    traceback = [line for line in lines if line.startswith("<3>")]
    assert traceback[0] == "<3>ERROR faceagent: job failed" and traceback[-1] == "<3>ValueError: boom" and len(traceback) > 3
    assert lines[-1] == "<2>CRITICAL faceagent: stopping"
    assert all(line[:1] == "<" for line in lines)  # every line of a traceback keeps the priority
    setup_logging("INFO", "json", stream)
    log.error("in json")
    stream.seek(0)
    last = stream.read().splitlines()[-1]
    assert last.startswith("<3>{") and json.loads(last[3:])["msg"] == "in json"
    setup_logging("INFO", "text")


def test_an_inherited_journal_stream_that_is_not_stderr_keeps_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """$JOURNAL_STREAM inherited by a shell started from a service names another file: not the journal."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    logging.getLogger("faceagent").warning("hello")
    assert stream.getvalue()[:2] == "20" and "<4>" not in stream.getvalue()
    setup_logging("INFO", "text")


def test_json_lines_are_parseable() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    logging.getLogger("faceagent").warning("clock %s", "off")
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "WARNING" and entry["msg"] == "clock off" and entry["ts"].endswith("+00:00")
    setup_logging("INFO", "text")
