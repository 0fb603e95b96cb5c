"""Secrets, Authorization headers and image data never reach a log line, whatever the format."""

from __future__ import annotations

import base64
import io
import json
import logging

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
    out = captured.getvalue()
    for leaked in (SECRET_KEY, MQTT_PASSWORD, "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168", IMAGE_B64[:120], '"AAAA"'):
        assert leaked not in out
    assert "1001" in out  # ordinary data survives
    assert "iai.tencentcloudapi.com" in out
    assert out.count("\n") >= 8


def test_redact_keeps_ordinary_text() -> None:
    text = "enrolled person 1001 on cam-01 in 1234 ms (RequestId 07d63403-a199-4bbe-b9e0-692356ac738d)"
    assert redact(text) == text


def test_no_timestamp_under_journald(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("INFO", "text", stream)
    logging.getLogger("faceagent").info("hello")
    assert stream.getvalue() == "INFO faceagent: hello\n"
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging("INFO", "text", stream)
    logging.getLogger("faceagent").info("hello")
    assert stream.getvalue().splitlines()[1][:2] == "20"


def test_json_lines_are_parseable() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    logging.getLogger("faceagent").warning("clock %s", "off")
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "WARNING" and entry["msg"] == "clock off" and entry["ts"].endswith("+00:00")
    setup_logging("INFO", "text")
