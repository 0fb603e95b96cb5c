"""Pictures where people look: annotated frames (upload crop, legible scores, the whole verdict) and `snapshot`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from agent.config import CropConfig, QualityConfig, SelectionConfig
from agent.images import read_image
from agent.vision.annotate import CROP, FONT, _wrap, annotate
from agent.vision.crop import square_region
from agent.vision.detector import FaceDetector
from agent.vision.selection import Analysis, analyze
from tests.conftest import DATA


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def analysed(detector: FaceDetector, name: str, width: int | None = None) -> tuple[np.ndarray, Analysis]:
    frame = read_image(DATA / name)
    if width is not None:
        frame = cv2.resize(frame, (width, round(frame.shape[0] * width / frame.shape[1])), interpolation=cv2.INTER_AREA)
    return frame, analyze(detector, frame, QualityConfig(), SelectionConfig())


def test_the_annotated_frame_shows_the_square_that_would_be_uploaded(detector: FaceDetector) -> None:
    frame, analysis = analysed(detector, "grace_hopper.jpg")
    assert analysis.ok and analysis.target is not None
    x, y, side = square_region(analysis.target.face, CropConfig().scale, CropConfig().min_side_px)
    assert x > 0 and y > 0 and x + side < frame.shape[1] and y + side < frame.shape[0]  # wholly inside: every edge drawn
    edges = [(x + side // 2, y), (x + side // 2, y + side), (x, y + side // 2), (x + side, y + side // 2)]
    drawn = annotate(frame, analysis, CropConfig())
    assert all(tuple(int(c) for c in drawn[py, px]) == CROP for px, py in edges)
    plain = annotate(frame, analysis)
    assert not all(tuple(int(c) for c in plain[py, px]) == CROP for px, py in edges)  # only when asked for


def test_scores_sit_on_a_dark_plate_and_stay_clear_of_the_banner(detector: FaceDetector) -> None:
    frame, analysis = analysed(detector, "camera.png", width=320)  # a detection-frame size, a long refusal banner
    assert not analysis.ok and len(_wrap(f"{analysis.verdict}: {analysis.detail}", 308, 0.45, 1)) >= 2
    drawn = annotate(frame, analysis, CropConfig())
    x1, y1, x2, y2 = (round(v) for v in analysis.faces[0].face.box)
    (tw, th), base = cv2.getTextSize(f"{analysis.faces[0].face.score:.2f}", FONT, 0.45, 1)
    assert th >= 9  # Hershey at this scale: about 10 px capitals on a 320 px frame
    # the banner reaches below the box's top, so the label goes under the box, on black
    plate = drawn[y2 + 3 : y2 + 3 + th + base + 4, x1 : x1 + tw + 4]
    corners = [plate[0, 0], plate[0, -1], plate[-1, 0], plate[-1, -1]]
    assert all(int(c.max()) == 0 for c in corners) and plate.max() > 150  # a black plate, bright text on it


def test_the_whole_verdict_is_written_however_long(detector: FaceDetector) -> None:
    frame, analysis = analysed(detector, "camera.png", width=320)
    banner = f"{analysis.verdict}: {analysis.detail}"
    lines = _wrap(banner, 320 - 12, 0.45, 1)
    assert " ".join(lines) == " ".join(banner.split())  # nothing dropped (the old banner kept 90 characters)
    assert all(cv2.getTextSize(line, FONT, 0.45, 1)[0][0] <= 308 for line in lines if " " in line)
    drawn = annotate(frame, analysis)
    line_height = sum(cv2.getTextSize("Ag", FONT, 0.45, 1)[0][1:]) + cv2.getTextSize("Ag", FONT, 0.45, 1)[1] + 4
    last_line_row = drawn[(len(lines) - 1) * line_height + 2, : cv2.getTextSize(lines[-1], FONT, 0.45, 1)[0][0]]
    assert (last_line_row.max(axis=1) == 0).any() and last_line_row.max() > 150  # the last line has its plate and its text


# --- faceagent snapshot --------------------------------------------------------------------------------------


def snapshot(tmp_path: Path, camera: dict[str, object], *extra: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"device_id": "cam-test", "state_dir": str(tmp_path), "camera": camera}))
    return subprocess.run([sys.executable, "-m", "agent", "snapshot", "--config", str(cfg), *extra],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("out", ["aim.txt", "no/such/folder/aim.jpg"])
def test_snapshot_refuses_an_unwritable_out_before_opening_the_camera(tmp_path: Path, out: str) -> None:
    proc = snapshot(tmp_path, {"type": "files", "path": str(tmp_path / "no-camera-here")}, "--out", str(tmp_path / out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "no-camera-here" not in proc.stderr  # refused before the camera opened
    assert f"--out {tmp_path / out}: " in proc.stderr


def test_snapshot_annotates_and_prints_the_verdict(tmp_path: Path) -> None:
    proc = snapshot(tmp_path, {"type": "files", "path": str(DATA / "grace_hopper.jpg")}, "--out", str(tmp_path / "aim.png"), "--annotate")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'aim.png'}: 512x600 from files ")
    assert lines[1].startswith("verdict ok: ready to enroll (1 face); chosen face: score 1.00, box ")
    assert cv2.imread(str(tmp_path / "aim.png")) is not None
    proc = snapshot(tmp_path, {"type": "files", "path": str(DATA / "coffee.png")}, "--out", str(tmp_path / "aim.jpg"), "--annotate")
    assert proc.returncode == 0 and proc.stdout.splitlines()[1] == "verdict no_face: no face found (0 faces)"


# --- from a remote device: faceagent ctl -----------------------------------------------------------------------


def ctl(broker_url: str, verb: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "ctl", verb, "--broker", broker_url, *args], capture_output=True, text=True,
                          timeout=90, check=False, env={"PATH": "/usr/bin:/bin"})


def test_ctl_snapshot_saves_the_annotated_frame_and_prints_the_verdict(broker: Any, make_agent: Any, tmp_path: Path) -> None:
    agent = make_agent(broker)
    out = tmp_path / "aim.jpg"
    proc = ctl(broker.url, "snapshot", "--device", agent.device_id, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"{out}: annotated frame from {agent.device_id}", proc.stdout.splitlines()[1]]
    assert proc.stdout.splitlines()[1].startswith("verdict ok: ready to enroll (1 face); chosen face: score 1.00")
    image = cv2.imread(str(out))
    original = read_image(DATA / "grace_hopper.jpg")
    assert image.shape == original.shape and np.abs(image.astype(int) - original.astype(int)).max() > 100  # drawn on
    wrong = ctl(broker.url, "snapshot", "--device", agent.device_id, "--out", str(tmp_path / "aim.png"))
    assert wrong.returncode == 2 and "the device sends a JPEG" in wrong.stderr
    nobody = ctl(broker.url, "snapshot", "--device", "nobody-home", "--out", str(out), "--timeout", "1", "--queue")
    assert nobody.returncode == 3 and "no snapshot from nobody-home within 1 s" in nobody.stderr


def test_ctl_enroll_preview_saves_the_uploaded_crops_and_marks_replays(broker: Any, make_agent: Any, person: str, tmp_path: Path) -> None:
    agent = make_agent(broker)
    first = ctl(broker.url, "enroll", "--device", agent.device_id, "--person-id", person, "--faces", "2", "--id", "pv-1",
                "--preview", str(tmp_path), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "preview_jpeg_b64" not in json.loads(first.stdout)  # saved as files, not printed as base64
    crops = sorted(tmp_path.glob("pv-1-*.jpg"))
    assert [p.name for p in crops] == ["pv-1-0.jpg", "pv-1-1.jpg"] and f"crops saved: {crops[0]}" in first.stderr
    crop = cv2.imread(str(crops[0]))
    assert crop.shape[0] == crop.shape[1] == 160  # enroll.preview_px: the uploaded square crop, made small
    again = ctl(broker.url, "enroll", "--device", agent.device_id, "--person-id", person, "--id", "pv-1")
    assert again.returncode == 0
    assert again.stdout.splitlines()[0] == "replayed: the stored result of an earlier command with this id; nothing was run again"
    assert again.stdout.splitlines()[1] == f"succeeded: person {person} — 2 face(s) added"
    missing = ctl(broker.url, "enroll", "--device", agent.device_id, "--person-id", person, "--preview", str(tmp_path / "none"))
    assert missing.returncode == 2 and "--preview" in missing.stderr and "not a folder" in missing.stderr


def test_the_readme_shows_a_real_annotated_snapshot() -> None:
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    assert "](docs/snapshot-annotated.jpg)" in readme
    picture = cv2.imread(str(REPO / "docs" / "snapshot-annotated.jpg"))
    original = read_image(DATA / "grace_hopper.jpg")
    assert picture is not None and picture.shape == original.shape  # made by `faceagent snapshot --annotate` from this photo
