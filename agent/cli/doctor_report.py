"""`faceagent doctor --report FILE`: what a real board says, in one JSON file a first user attaches to an issue.

The doctor's checks tell an installer what to fix; the report tells the developers what the product met in the
field, which no emulator shows: the board and OS, the kernel, onnxruntime and the CPU features it can use, the
camera modules with their sensor modes and the streams libcamera settled on, the detector's milliseconds per frame
at the configured threads, the memory after a dry-run enrollment, and the hardware tests' results.
Secrets never get in: the configuration is the redacted one, and every value of a configured secret (and of the
secret environment variables) is replaced wherever it would appear, as a last pass over the whole report.
Each section that fails says why instead, so a report is written whatever the board lacks.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from agent import __version__
from agent.cli.doctor_checks import Check
from agent.config import Config

SCHEMA = "faceagent-field-report/1"
SECTIONS = ("schema", "created", "faceagent", "board", "os", "kernel", "onnxruntime", "packages", "camera", "detector",
            "memory", "checks", "hw_tests", "config")
REDACTED = "<redacted>"
DETECTOR_FRAMES = 20  # timed detections after one warm-up: enough for a stable median on a Pi
HW_TESTS_TIMEOUT_S = 900.0
SECRET_ENV = re.compile(r"(SECRET|PASSWORD|TOKEN|HMAC|_KEY$)", re.IGNORECASE)
PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "picamera2", "paho-mqtt", "pydantic", "pydantic-core",
            "requests", "PyYAML")
# The CPU features onnxruntime's kernels choose by (MLAS): dot products, half floats, matrix and vector extensions.
ORT_FEATURES = {"asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2", "sse4_2", "avx", "avx2", "fma",
                "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8"}


def section(build: Callable[[], Any]) -> Any:
    """One section's facts, or why they could not be had (a report is written whatever fails)."""
    try:
        return build()
    except Exception as exc:  # any failure is itself a field fact worth reporting
        return {"error": f"{type(exc).__name__}: {exc}"}


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, and the board's (Model, Revision on a Pi)."""
    fields: dict[str, str] = {}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def board() -> dict[str, Any]:
    info = cpuinfo()
    model = read_text("/proc/device-tree/model") or info.get("Model") or read_text("/sys/class/dmi/id/product_name")
    meminfo = read_text("/proc/meminfo") or ""
    total = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    return {"model": model, "revision": info.get("Revision"), "memory_mb": round(int(total.group(1)) / 1024) if total else None,
            "cores": os.cpu_count(), "machine": platform.machine()}


def os_release() -> dict[str, Any]:
    fields = dict(line.split("=", 1) for line in (read_text("/etc/os-release") or "").splitlines() if "=" in line)
    wanted = ("PRETTY_NAME", "ID", "VERSION_ID", "VERSION_CODENAME")
    return {**{key.lower(): fields[key].strip('"') for key in wanted if key in fields},
            "debian_version": read_text("/etc/debian_version"), "python": platform.python_version(),
            "python_executable": sys.executable}


def kernel() -> dict[str, Any]:
    uname = platform.uname()
    return {"release": uname.release, "version": uname.version, "machine": uname.machine,
            "page_size": os.sysconf("SC_PAGE_SIZE")}


def installation() -> dict[str, Any]:
    """Which faceagent, installed how: the .deb's venv, another venv, or a source checkout."""
    package = Path(__file__).resolve().parent.parent
    how = ("deb" if str(package).startswith("/opt/faceagent/") and Path("/var/lib/dpkg/info/faceagent.list").exists()
           else "source checkout" if (package.parent / "setup.cfg").exists() else "pip")
    lock = Path(sys.prefix) / "requirements.lock"
    return {"version": __version__, "installed_as": how, "package": str(package), "prefix": sys.prefix,
            "lock": str(lock) if lock.exists() else None}


def packages() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        import cv2

        found["cv2"] = cv2.__version__  # apt's python3-opencv has no wheel metadata
    except ImportError:
        found["cv2"] = None
    numpy = sys.modules.get("numpy")
    found["numpy"] = getattr(numpy, "__version__", found["numpy"])
    return found


def onnxruntime_facts(config: Config) -> dict[str, Any]:
    import onnxruntime

    from agent.vision.detector import default_threads

    info = cpuinfo()
    flags = set((info.get("Features") or info.get("flags") or "").split())
    return {"version": onnxruntime.__version__, "device": onnxruntime.get_device(),
            "providers": onnxruntime.get_available_providers(),
            "cpu": {"model": info.get("model name") or info.get("CPU part"), "implementer": info.get("CPU implementer"),
                    "architecture": info.get("CPU architecture"), "features": sorted(flags & ORT_FEATURES),
                    "all_features": sorted(flags) if "Features" in info else None},
            "threads": config.detector.threads or default_threads()}


def camera_facts(config: Config) -> tuple[dict[str, Any], list[Any]]:
    """The camera modules, their sensor modes, the streams libcamera settled on; and a few frames for the detector."""
    from agent.camera.camera import build_source

    facts: dict[str, Any] = {"type": config.camera.type}
    if config.camera.type == "picamera2":
        from agent.camera.picamera2 import import_picamera2

        picamera2, _ = import_picamera2()
        facts["modules"] = [{k: v for k, v in dict(c).items() if k in ("Model", "Location", "Rotation", "Id", "Num")}
                            for c in picamera2.global_camera_info()]
    source = build_source(config.camera)
    frames = []
    with source:
        for _ in range(3):
            frames.append(source.read())
        facts["description"] = source.description
    image, small = frames[0].image, frames[0].detect_image
    facts["frame"] = {"main": [image.shape[1], image.shape[0]],
                      "detect": [small.shape[1], small.shape[0]] if small is not None else None}
    mode = getattr(source, "sensor_mode", None)
    if config.camera.type == "picamera2":
        # The modes the source read from this camera to choose one (it keeps them per model, to read them once).
        modes: list[Any] = next(iter(getattr(source, "_modes", {}).values()), [])
        facts["sensor_modes"] = [{"size": list(m.size), "bit_depth": m.bit_depth, "fps": m.fps, "crop": list(m.crop)} for m in modes]
        fov = getattr(source, "field_of_view", None)
        facts["streams"] = {"main": list(source.active_size), "lores": list(source.active_lores),  # type: ignore[attr-defined]
                            "lores_encoding": source.encoding.name,  # type: ignore[attr-defined]
                            "sensor_mode": {"size": list(mode.size), "bit_depth": mode.bit_depth} if mode else None,
                            "field_of_view": {"width": round(fov.width, 3), "height": round(fov.height, 3)} if fov else None}
    return facts, frames


def detector_facts(config: Config, frames: list[Any]) -> dict[str, Any]:
    """Milliseconds per frame at the configured threads, on the camera's frames (else the bundled photo)."""
    from agent.images import read_image
    from agent.vision.detector import detector_from_config

    detector = detector_from_config(config.detector)
    if frames:
        pairs, source = [(f.image, f.detect_image) for f in frames], "camera"
    else:
        from agent.devtools.demo import demo_photo

        pairs, source = [(read_image(demo_photo()), None)], "the bundled demo photo (no camera frame)"
    detector.detect(*pairs[0])  # warm-up: onnxruntime's first run allocates
    times, faces = [], 0
    for i in range(DETECTOR_FRAMES):
        started = time.perf_counter()
        faces = len(detector.detect(*pairs[i % len(pairs)]))
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {**detector.describe(), "frames_from": source, "frames": DETECTOR_FRAMES, "faces_in_last_frame": faces,
            "ms_per_frame": {"median": round(statistics.median(times), 1), "p90": round(times[int(len(times) * 0.9) - 1], 1),
                             "min": round(times[0], 1)}}


def rss_mb() -> dict[str, float | None]:
    status = read_text("/proc/self/status") or ""
    found = {key: re.search(rf"{key}:\s+(\d+) kB", status) for key in ("VmRSS", "VmHWM")}
    return {"rss_mb": round(int(m.group(1)) / 1024, 1) if (m := found["VmRSS"]) else None,
            "peak_rss_mb": round(int(m.group(1)) / 1024, 1) if (m := found["VmHWM"]) else None}


def dry_run_memory(config: Config) -> dict[str, Any]:
    """A dry-run enrollment through the configured camera and detector (no cloud call), then this process's RSS."""
    from agent.camera.camera import Camera, build_source
    from agent.service.enroller import Enroller
    from agent.service.protocol import EnrollCommand, parse_command
    from agent.vision.detector import detector_from_config

    before = rss_mb()["rss_mb"]
    command = parse_command(json.dumps({"id": f"report-{uuid.uuid4().hex[:12]}", "person_id": "field-report",
                                        "dry_run": True}).encode())
    assert isinstance(command, EnrollCommand)
    camera = Camera(build_source(config.camera), config.camera.fps, None)
    try:
        result = Enroller(config, detector=detector_from_config(config.detector), camera=camera, client=None, uploader=None).run(command)
    finally:
        camera.close()
    outcome = result.to_json()
    return {"dry_run": {"status": outcome.get("status"), "error": (outcome.get("error") or {}).get("code")},
            "rss_mb_before": before, **rss_mb()}


def hw_tests(tests_dir: Path | None) -> dict[str, Any]:
    """`pytest -m hw` on the installed tests (FACEAGENT_HW=1 on a Raspberry Pi), each test's outcome."""
    if tests_dir is None:
        beside = Path(__file__).resolve().parent.parent.parent / "tests"
        tests_dir = beside if (beside / "conftest.py").exists() else None
    if tests_dir is None or not (tests_dir / "conftest.py").exists():
        return {"ran": False, "why": "the tests are not installed (the package ships none): run it from a clone with "
                                     "--tests tests, in a venv with pytest"}
    try:
        metadata.version("pytest")
    except metadata.PackageNotFoundError:
        return {"ran": False, "why": f"pytest is not installed in {sys.prefix} (pip install pytest pytest-timeout)"}
    files = sorted(str(p) for p in tests_dir.glob("test_*.py") if "mark.hw" in p.read_text(errors="replace"))
    if not files:
        return {"ran": False, "why": f"no test in {tests_dir} is marked hw"}
    on_pi = "raspberry pi" in (board().get("model") or "").lower()
    env = {**os.environ, **({"FACEAGENT_HW": "1"} if on_pi else {})}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "hw.xml"
        command = [sys.executable, "-m", "pytest", "-m", "hw", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={junit}", *files]
        # this interpreter's pytest on the named test files
        proc = subprocess.run(command, cwd=tests_dir.parent, env=env, capture_output=True, text=True,  # noqa: S603
                              timeout=HW_TESTS_TIMEOUT_S, check=False)
        tests = junit_outcomes(junit) if junit.exists() else []
    return {"ran": True, "on_raspberry_pi": on_pi, "command": " ".join(["pytest", "-m", "hw", *(Path(f).name for f in files)]),
            "exit_code": proc.returncode, "summary": (proc.stdout.strip().splitlines() or [""])[-1], "tests": tests,
            **({"output_tail": proc.stdout.strip().splitlines()[-30:]} if proc.returncode not in (0, 5) else {})}


def junit_outcomes(path: Path) -> list[dict[str, str]]:
    found = []
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - written just now by our own pytest run
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = {"failure": "failed"}.get(child.tag, child.tag), child.get("message", "")
        found.append({"test": f"{case.get('classname', '')}.{case.get('name', '')}", "outcome": outcome, "message": message[:300]})
    return found


def secret_values(config: Config, environ: Mapping[str, str]) -> list[str]:
    values = [secret.get_secret_value() for secret in (getattr(config.secrets, name) for name in type(config.secrets).model_fields)
              if secret is not None]
    values += [value for name, value in environ.items() if SECRET_ENV.search(name)]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def redact(value: Any, secrets: list[str]) -> Any:
    """`value` with every occurrence of a secret replaced, through dicts and lists."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


def build_report(config: Config, checks: list[Check], tests_dir: Path | None = None,
                 environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    camera = section(lambda: camera_facts(config))
    camera_section, frames = camera if isinstance(camera, tuple) else (camera, [])
    report = {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "faceagent": section(installation), "board": section(board), "os": section(os_release), "kernel": section(kernel),
        "onnxruntime": section(lambda: onnxruntime_facts(config)), "packages": section(packages), "camera": camera_section,
        "detector": section(lambda: detector_facts(config, frames)), "memory": section(lambda: dry_run_memory(config)),
        "checks": [c.as_json() for c in checks], "hw_tests": section(lambda: hw_tests(tests_dir)),
        "config": config.redacted(),
    }
    return dict(redact(report, secret_values(config, environ)))


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Written whole or not at all: a temporary file beside it, renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    if os.environ.get("SUDO_UID"):  # `sudo faceagent doctor --report` leaves the file to the user who asked
        os.chown(path, int(os.environ["SUDO_UID"]), int(os.environ.get("SUDO_GID", os.environ["SUDO_UID"])))
