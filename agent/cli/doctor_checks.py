"""The checks of `faceagent doctor`, one function each: what it found, and on failure how to fix it.

Each check uses the same parts the service uses (config loader, detector, camera backend, paho client built
by service/mqtt.py, the IAI client) so a check passes exactly when the service would work, and reads only:
the cloud is asked `GetGroupList` (one entry), the broker gets a CONNECT and a DISCONNECT.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cli.common import Credentials
from agent.config import Config, MqttConfig, parse_broker_url
from agent.errors import CameraUnavailable, ConfigError, ModelError

CLOCK_WARN_S = 5.0  # beyond the Date header's 1 s resolution and a slow answer: NTP is not holding the clock
CLOCK_FAIL_S = 30.0  # signed commands (commands.max_clock_skew_s) and the cloud's 5-minute window are at risk
DISK_FAIL_MB = 50.0  # a few hundred results and one upload in flight fit easily; below this the store starts failing
DISK_WARN_MB = 500.0
CAMERA_SAMPLE_FRAMES = 5


@dataclass(frozen=True)
class Check:
    """One line of the checklist: `status` is ok, warn, fail or skip."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail, **({"fix": self.fix} if self.fix else {})}


def check_credentials(config: Config, credentials: Credentials) -> Check:
    folder = credentials.directory
    where = f"in {folder}" if folder is not None else "in the environment"
    missing = [name for name, value in (("tencentcloud_secret_id", config.secrets.secret_id),
                                        ("tencentcloud_secret_key", config.secrets.secret_key)) if value is None]
    if missing:
        if folder is None and "readable by root only" in credentials.note:
            return Check("credentials", "fail", credentials.note, "run it as root: sudo faceagent doctor")
        target = folder or Path("/etc/faceagent/credentials")
        return Check("credentials", "fail", f"{' and '.join(missing)} not set {where}",
                     f"write them: printf %s 'VALUE' | sudo tee {target}/{missing[0]} (no trailing space or newline)")
    extra = []
    if config.mqtt.username and config.secrets.mqtt_password is None:
        return Check("credentials", "fail", f"mqtt.username is {config.mqtt.username} but mqtt_password is not set {where}",
                     f"put the broker password in {folder or '$FACEAGENT_MQTT_PASSWORD'}{'/mqtt_password' if folder else ''}")
    if config.secrets.mqtt_password is not None:
        extra.append("mqtt_password")
    if config.secrets.command_key is not None:
        extra.append("command_hmac_key")
    if config.secrets.session_token is not None:
        extra.append("tencentcloud_session_token")
    return Check("credentials", "ok", f"{credentials.note}: SecretId and SecretKey set" + (f", {', '.join(extra)} set" if extra else ""))


def check_model(config: Config) -> Check:
    from agent.models import DEFAULT_MODEL
    from agent.vision.detector import detector_from_config

    try:
        detector = detector_from_config(config.detector)
    except ModelError as exc:
        fix = "reinstall faceagent (systemd/install.sh)" if config.detector.model_path is None else "check detector.model_path"
        return Check("model", "fail", exc.message, fix)
    bundled = "the bundled model, checksum verified" if detector.model_path == DEFAULT_MODEL else str(detector.model_path)
    return Check("model", "ok", f"{detector.model_name} ({bundled}, sha256 {detector.sha256[:12]}...), input "
                                f"{detector.input_size[0]}x{detector.input_size[1]}, {detector.threads} thread(s)")


def check_camera(config: Config) -> Check:
    from agent.camera.camera import build_source

    source = build_source(config.camera)
    try:
        with source:
            frame = source.read()
            h, w = frame.image.shape[:2]
            streams = f"{w}x{h} upload frames"
            if frame.detect_image is not None:
                dh, dw = frame.detect_image.shape[:2]
                streams += f" + {dw}x{dh} detection frames (lores stream)"
            rate = ""
            if source.live:
                started = time.monotonic()
                for _ in range(CAMERA_SAMPLE_FRAMES):
                    source.read()
                elapsed = time.monotonic() - started
                rate = f", {CAMERA_SAMPLE_FRAMES} frames in {elapsed:.2f} s ({CAMERA_SAMPLE_FRAMES / max(elapsed, 1e-6):.1f} fps)"
    except CameraUnavailable as exc:
        return Check("camera", "fail", exc.message, camera_fix(config, exc.message))
    return Check("camera", "ok", f"{source.description}: {streams}{rate}")


def camera_fix(config: Config, message: str) -> str:
    """The fix for this camera failure: a busy camera, a missing device, the video group, the ribbon cable, a wrong path."""
    cam = config.camera
    if cam.type == "files":
        return (f"camera.path {cam.path} must be an image, a folder of images or a video this user can read "
                "(on a Raspberry Pi with a camera: camera.type picamera2)")
    if "busy" in message:
        return ("another process holds the camera: the running service (it closes an idle camera after camera.idle_close_s; "
                "or sudo systemctl stop faceagent while checking), rpicam-* or a second faceagent")
    if "rotation" in message:
        return "set camera.rotation: 0 and turn the camera instead"
    if cam.type == "picamera2":
        return "power off, reseat the ribbon cable (contacts the right way round), then check rpicam-hello --list-cameras"
    device = str(cam.device if cam.device is not None else 0)
    node = Path(device if device.startswith("/") else f"/dev/video{device}") if not device.startswith(("rtsp:", "http")) else None
    if node is None:
        return f"the stream {device} does not answer: check its URL and that it plays (ffplay {device})"
    if not node.exists():
        return f"{node} does not exist: is the USB camera plugged in? ls /dev/video* lists the cameras (camera.device)"
    if not os.access(node, os.R_OK | os.W_OK):
        return f"{node} is not accessible to this user: the service runs in group video (SupplementaryGroups=video); run doctor with sudo"
    return f"{node} cannot be opened: another program may hold it, or it is not a capture node (v4l2-ctl --list-devices)"


def check_broker(config: Config) -> Check:
    """CONNECT with the configured URL, TLS settings and credentials; refused, unreachable and untrusted are told apart.

    With `protocol: 5` a broker that refuses MQTT 5 is asked again with 3.1.1, as the service does
    (agent/service/mqtt.py): a warning that names the setting which skips the first attempt.
    """
    from agent.service.mqtt import refusal_fix, refused_mqtt5

    cfg = config.mqtt.model_copy(update={"session_expiry_s": 0})
    answer = _connect_once(cfg, config)
    if isinstance(answer, Check):
        return answer
    reason, got_connack = answer
    note = ""
    if cfg.protocol == "5" and (reason is None or reason.is_failure) and refused_mqtt5(reason, got_connack):
        how = f"it answered {reason}" if got_connack else "it closed the connection without answering"
        fallback = _connect_once(cfg.model_copy(update={"protocol": "3.1.1"}), config)
        if isinstance(fallback, Check):
            return fallback
        if fallback[0] is not None and not fallback[0].is_failure:
            user = f", user {cfg.username}" if cfg.username else ""
            return Check("broker", "warn", f"{cfg.url} does not accept MQTT 5 ({how}); connected with MQTT 3.1.1{user}: the service "
                         "falls back the same way (commands carry reply_to, correlation and expires_at in the payload)",
                         'set mqtt.protocol: "3.1.1" to skip the MQTT 5 attempt, and the broker\'s message size limit (docs/brokers.md)')
        note = f" (MQTT 5: {how})"
        reason, got_connack = fallback
    if not got_connack:
        return Check("broker", "fail", f"{cfg.url} closed the connection without answering CONNECT{note}",
                     'is this an MQTT port? check mqtt.url; a broker that speaks only MQTT 3.1.1 needs mqtt.protocol: "3.1.1"')
    if reason is None:
        return Check("broker", "fail", f"{cfg.url}: no answer to CONNECT within 10 s", "is this an MQTT port? check mqtt.url")
    if reason.is_failure:
        return Check("broker", "fail", f"{cfg.url} refused the connection: {reason}{note}", refusal_fix(reason))
    security = "TLS, certificate verified" if parse_broker_url(cfg.url).tls else "plain TCP, no TLS"
    user = f", user {cfg.username}" if cfg.username else ""
    return Check("broker", "ok", f"connected to {cfg.url} ({security}{user}, MQTT {cfg.protocol})")


def _connect_once(cfg: MqttConfig, config: Config) -> tuple[Any, bool] | Check:
    """One CONNECT: (the CONNACK's reason or None, whether a CONNACK or a clean wait came), or the failed Check."""
    from agent.service.mqtt import build_client

    broker = parse_broker_url(cfg.url)
    password = config.secrets.mqtt_password.get_secret_value() if config.secrets.mqtt_password else None
    answer: dict[str, Any] = {}
    try:
        client = build_client(cfg, f"faceagent-doctor-{uuid.uuid4().hex[:8]}", cfg.username, password)
    except ConfigError as exc:
        return Check("broker", "fail", exc.message, "mqtt.tls: give the CA, certificate and key files in PEM")
    client.on_connect = lambda c, userdata, flags, reason, props: answer.update(reason=reason)
    client.on_disconnect = lambda c, userdata, flags, reason, props: answer.setdefault("closed", reason)
    try:
        client.connect(broker.host, broker.port, cfg.keepalive_s)  # TCP, TLS handshake and CONNECT, here and now
        deadline = time.monotonic() + 10.0
        while "reason" not in answer and "closed" not in answer and time.monotonic() < deadline:
            client.loop(timeout=0.5)
    except ssl.SSLCertVerificationError as exc:
        trusted = f"mqtt.tls.ca_file {cfg.tls.ca_file}" if cfg.tls.ca_file else "the system CAs"
        fix = ("use the name the certificate was issued for in mqtt.url" if "match" in str(exc.verify_message) else
               "set mqtt.tls.ca_file to the CA that signed the broker's certificate")
        return Check("broker", "fail", f"{cfg.url}: its certificate is not trusted by {trusted} ({exc.verify_message})", fix)
    except (ssl.SSLError, ConnectionResetError) as exc:
        return Check("broker", "fail", f"{cfg.url}: the TLS handshake failed ({exc})",
                     "mqtts:// needs a TLS listener; with require_certificate set mqtt.tls.cert_file and key_file")
    except socket.gaierror:
        return Check("broker", "fail", f"{cfg.url}: the host {broker.host} is not known", "check mqtt.url and the DNS")
    except OSError as exc:
        return Check("broker", "fail", f"{cfg.url}: cannot connect ({exc.strerror or exc})",
                     "is the broker running and mqtt.url right (host, port, mqtt:// or mqtts://)?")
    finally:
        client.disconnect()
    return answer.get("reason"), "reason" in answer or "closed" not in answer


def check_cloud(config: Config, clock: Callable[[], float] = time.time) -> tuple[Check, Check]:
    """The keys accepted by a read-only call, and the device clock against the cloud's `Date` header."""
    from agent.iai.client import IaiClient
    from agent.iai.errors import CloudAuthError, CloudError

    if config.secrets.secret_id is None or config.secrets.secret_key is None:
        skipped = Check("cloud", "skip", "no SecretId/SecretKey (see credentials)")
        return skipped, Check("clock", "skip", "the cloud could not be asked")
    cloud = config.cloud.model_copy(update={"max_attempts": min(2, config.cloud.max_attempts), "deadline_s": min(15.0, config.cloud.deadline_s)})
    client = IaiClient.from_config(cloud, config.secrets, clock=clock)
    try:
        groups = client.get_group_list(limit=1)
    except CloudError as exc:
        fix = cloud_fix(exc, isinstance(exc, CloudAuthError))
        failed = Check("cloud", "fail", f"{config.cloud.endpoint}: {exc.message}" + (f" ({exc.cloud_code})" if exc.cloud_code else ""), fix)
        return failed, clock_check(client.transport.last_date)
    finally:
        client.close()
    detail = f"keys accepted by {config.cloud.endpoint} (GetGroupList: {groups.group_num} group(s), RequestId {groups.request_id})"
    return Check("cloud", "ok", detail), clock_check(client.transport.last_date)


def check_liveness(config: Config) -> Check:
    """With liveness.mode cloud: the key's CAM policy allows DetectLiveFaceAccurate (asked without an image: not billed)."""
    from agent.iai.client import IaiClient
    from agent.iai.errors import CloudAuthError, CloudError

    if config.secrets.secret_id is None or config.secrets.secret_key is None:
        return Check("liveness", "skip", "no SecretId/SecretKey (see credentials)")
    cloud = config.cloud.model_copy(update={"max_attempts": min(2, config.cloud.max_attempts), "deadline_s": min(15.0, config.cloud.deadline_s)})
    client = IaiClient.from_config(cloud, config.secrets)
    try:
        request_id = client.may_detect_liveness()
    except CloudAuthError as exc:
        return Check("liveness", "fail", f"liveness.mode is cloud, but {exc.message}" + (f" ({exc.cloud_code})" if exc.cloud_code else ""),
                     'add "iai:DetectLiveFaceAccurate" to the key\'s CAM policy (README, "Before your first real enrollment"), '
                     "or set liveness.mode: off")
    except CloudError as exc:
        return Check("liveness", "fail", f"DetectLiveFaceAccurate: {exc.message}" + (f" ({exc.cloud_code})" if exc.cloud_code else ""),
                     cloud_fix(exc, False))
    finally:
        client.close()
    return Check("liveness", "ok", f"the key may call DetectLiveFaceAccurate (asked without an image, RequestId {request_id}); "
                                   f"each enrollment image is a billed call, threshold {config.liveness.threshold:g}")


ACCOUNT_FIXES = {
    "auth_failed": "check tencentcloud_secret_id/_key, and that the key may call IAI (CAM policy: README, "
                   "'Before your first real enrollment')",
    "in_arrears": "top up the Tencent Cloud account (Billing Center); enrollments are refused at once until then",
    "not_activated": "activate Face Recognition (IAI) for this account in the Tencent Cloud console",
    "suspended": "the account is frozen or suspended: ask Tencent Cloud support; nothing can be enrolled until then",
    "region": "set cloud.region to a region where IAI serves this account (the one your person groups live in)",
}


def cloud_fix(exc: Exception, auth: bool) -> str:
    """What to do about a failed account check: by what the error says about the account, else the network."""
    status = getattr(exc, "account_status", None) or ("auth_failed" if auth else None)
    if status in ACCOUNT_FIXES:
        return ACCOUNT_FIXES[status]
    if getattr(exc, "cloud_code", None):
        return "the cloud answered with an error: see its code in docs/iai.md and README, 'Before your first real enrollment'"
    return "check cloud.endpoint and the network (DNS, HTTPS_PROXY, firewall)"


def clock_check(last_date: tuple[float, float] | None) -> Check:
    """The device clock against the cloud's, from the last answer's `Date` header."""
    if last_date is None:
        return Check("clock", "skip", "the cloud sent no Date header (it could not be reached)")
    server, device = last_date
    offset = device - (server + 0.5)  # > 0: the device is ahead; Date has whole seconds, so the service was 0-1 s past it
    side = "ahead of" if offset > 0 else "behind"
    if abs(offset) <= CLOCK_WARN_S:
        return Check("clock", "ok", f"within {max(1, round(abs(offset)))} s of the cloud's clock (its Date header)")
    status = "fail" if abs(offset) > CLOCK_FAIL_S else "warn"
    return Check("clock", status, f"the device clock is {abs(offset):.0f} s {side} the cloud's",
                 "turn on NTP: sudo timedatectl set-ntp true (a Pi without a real-time clock boots with an old time)")


def check_disk(config: Config) -> Check:
    folder = config.state_dir
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    free_mb = shutil.disk_usage(existing).free / 1e6
    where = str(folder) if existing == folder else f"{folder} (not created yet; systemd's StateDirectory= creates it)"
    detail = f"{where}: {free_mb / 1000:.1f} GB free" if free_mb >= 1000 else f"{where}: {free_mb:.0f} MB free"
    if existing == folder and not os.access(folder, os.W_OK):
        return Check("disk", "fail", f"{detail}, but not writable by this user", f"the service's user must own {folder} (StateDirectory=)")
    if free_mb < DISK_FAIL_MB:
        return Check("disk", "fail", detail, f"free space on the file system of {existing}: commands are refused as storage_unavailable")
    if free_mb < DISK_WARN_MB:
        return Check("disk", "warn", detail, f"free space on the file system of {existing}")
    return Check("disk", "ok", detail)


def check_identity(config: Config) -> Check:
    """The device id is this device's alone: the service did not stop because another one took its broker session."""
    from agent.service.state_lock import CONFLICT_NOTE

    note = config.state_dir / CONFLICT_NOTE
    try:
        conflict = note.read_text().strip() if note.is_file() else ""
    except OSError as exc:
        return Check("identity", "warn", f"{note} cannot be read ({exc.strerror or exc})", "run it as root: sudo faceagent doctor")
    if conflict:
        return Check("identity", "fail", f"the service stopped (exit 78): {conflict}",
                     f"set a device_id no other device uses in agent.yaml (this one: {config.device_id}), "
                     "then sudo systemctl restart faceagent")
    if config.device_id == "raspberrypi":
        return Check("identity", "warn", "device id raspberrypi is Raspberry Pi OS's default hostname: every card cloned "
                                         "from this image has it, and two devices with one id knock each other off the broker",
                     "set device_id in agent.yaml to a name of its own (install.sh --device-id NAME)")
    return Check("identity", "ok", f"device id {config.device_id}: no other daemon has taken its broker session")
