"""RetinaFace (MobileNet-0.25) face detector on onnxruntime: letterbox, inference, prior decode, NMS.

The model's input contract (from agent/models/README.md): float32 NCHW, BGR, mean (104, 117, 123)
subtracted, no scaling. Outputs `loc` [1,N,4], `conf` [1,N,2] (softmaxed), `landmarks` [1,N,10].
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.config import DetectorConfig
from agent.errors import ModelError
from agent.models import DEFAULT_MODEL, DEFAULT_MODEL_SHA256
from agent.vision.cascade import CROP_INPUT_PX, confirm, crop_window, second_pass
from agent.vision.face import Face as Face  # noqa: PLC0414 (re-exported: callers take Face from the detector)
from agent.vision.face import covered, cut_square, iou

log = logging.getLogger(__name__)

MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
OUTPUTS = {"loc": 4, "conf": 2, "landmarks": 10}
# A detector input may be one bilinear step of up to 4x (it averages the middle 2x2 of each 4x4 block):
# the slight aliasing changed no recall figure (bench --recall), and skipping the halving of a 1280x720
# frame saves ~0.2 ms, 8 % of a 320x180 inference.
INPUT_MAX_STEP = 4.0


@lru_cache(maxsize=8)
def prior_boxes(width: int, height: int) -> np.ndarray:
    """Anchor boxes (cx, cy, w, h), normalised to the input size, in the model's output order."""
    parts = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cx = ((xs.reshape(-1) + 0.5) * step / width).repeat(len(sizes))
        cy = ((ys.reshape(-1) + 0.5) * step / height).repeat(len(sizes))
        size = np.tile(np.asarray(sizes, dtype=np.float64), rows * cols)
        parts.append(np.stack([cx, cy, size / width, size / height], axis=1))
    priors = np.concatenate(parts).astype(np.float32)
    priors.setflags(write=False)
    return priors


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Regression offsets -> (x1, y1, x2, y2), normalised."""
    centres = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def decode_landmarks(lms: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Landmark offsets -> N x 5 x 2 points, normalised."""
    offsets = lms.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * VARIANCES[0] * priors[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the detector input (padded right and bottom).

    Input pixel (u, v) is output pixel (u * to_x, v * to_y), where the output pixels are those of the
    frame itself, or of the larger capture frame it stands for (`letterbox(..., target=...)`).
    """

    to_x: float
    to_y: float
    width: int
    height: int


def shrink(frame: np.ndarray, width: int, height: int, max_step: float = 2.5) -> np.ndarray:
    """Resize to width x height: exact halvings (area-averaged) first, then one bilinear step of at most `max_step`.

    Bilinear alone aliases past ~2.5x reduction; INTER_AREA at odd ratios costs 3-8x more than this.
    """
    h, w = frame.shape[:2]
    while w > max_step * width and h > max_step * height:
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def fit_size(target: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The content size of a `target` (w, h) frame fitted into width x height keeping its aspect."""
    scale = min(width / target[0], height / target[1])
    return max(1, min(width, round(target[0] * scale))), max(1, min(height, round(target[1] * scale)))


def letterbox(
    frame: np.ndarray, width: int, height: int, out: np.ndarray | None = None, target: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Fit `frame` into width x height keeping its aspect (padded right and bottom); NCHW float32 tensor.

    `target`, when given, is the (w, h) of the capture frame that `frame` shows at another size (a
    camera's detection stream, possibly of another aspect): the content then takes the target's aspect,
    and the returned mapping leads to target pixels. Padding is 0 after mean subtraction, i.e. the mean
    colour, as in training. `out`, when given, is a reusable 1x3xHxW float32 buffer (a fresh 1 MB array
    per frame costs page faults on every call).
    """
    h, w = frame.shape[:2]
    tw, th = target or (w, h)
    new_w, new_h = fit_size((tw, th), width, height)
    resized = shrink(frame, new_w, new_h, INPUT_MAX_STEP)
    if out is None:
        tensor = np.zeros((1, 3, height, width), dtype=np.float32)
    else:
        tensor = out
        if (new_w, new_h) != (width, height):
            tensor.fill(0.0)
    # Per-plane subtraction writes contiguously; one strided HWC->CHW subtract is 3x slower.
    for channel, plane in enumerate(cv2.split(resized)):
        np.subtract(plane, np.float32(MEAN_BGR[channel]), out=tensor[0, channel, :new_h, :new_w])
    return tensor, Letterbox(tw / new_w, th / new_h, width, height)


def postprocess(
    outputs: dict[str, np.ndarray], fit: Letterbox, score_threshold: float, nms_threshold: float
) -> list[Face]:
    """Raw model outputs -> faces in output pixels (see `Letterbox`), best score first."""
    priors = prior_boxes(fit.width, fit.height)
    scores = outputs["conf"][0, :, 1]
    candidates = np.flatnonzero(scores > score_threshold)
    if candidates.size == 0:
        return []
    to_xy = np.asarray([fit.width * fit.to_x, fit.height * fit.to_y], dtype=np.float32)
    boxes = decode_boxes(outputs["loc"][0, candidates], priors[candidates]) * np.tile(to_xy, 2)
    lms = decode_landmarks(outputs["landmarks"][0, candidates], priors[candidates]) * to_xy
    kept = nms(boxes, scores[candidates], nms_threshold)
    boxes, lms, kept_scores = boxes[kept], lms[kept], scores[candidates][kept]
    return [
        Face(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s), landmarks=lm.astype(np.float64))
        for b, s, lm in zip(boxes, kept_scores, lms)
    ]


# A box lying this much inside a better one is the same face seen twice (a crop check's box and a
# first-pass box of one head can differ in size enough to escape NMS); real faces never nest so.
NESTED = 0.8


def without_duplicates(faces: list[Face], nms_threshold: float) -> list[Face]:
    """`faces` best score first, minus any that overlaps a better one above `nms_threshold` or lies inside it."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(iou(face.box, k.box) <= nms_threshold and covered(face.box, k.box) < NESTED for k in kept):
            kept.append(face)
    return kept


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_threads() -> int:
    """All cores but one (leave one for capture and JPEG), at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


class FaceDetector:
    """A loaded, warmed-up detector with a fixed input size. Not thread-safe: one per worker.

    With `cascade` (the default), detection is two-pass: the first pass keeps candidates down to
    `candidate_threshold`, and the doubtful ones are confirmed in crops of the full-resolution frame
    (agent/vision/cascade.py), at most `max_crop_checks` per frame. Without it, one pass at
    `score_threshold`. How small a face each setting finds: `agent.config.smallest_face_px`.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        input_size: tuple[int, int] = (320, 180),
        *,
        threads: int = 0,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        cascade: bool = True,
        candidate_threshold: float = 0.05,
        max_crop_checks: int = 4,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        self.input_size = input_size
        self.threads = threads or default_threads()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.cascade = cascade
        self.candidate_threshold = min(candidate_threshold, score_threshold)
        self.max_crop_checks = max_crop_checks
        self.last_crop_checks = 0  # crop checks made by the last `detect` (for benchmarks and telemetry)
        if not self.model_path.is_file():
            raise ModelError(f"detector model {self.model_path} does not exist")
        self.sha256 = file_sha256(self.model_path)
        if self.model_path == DEFAULT_MODEL and self.sha256 != DEFAULT_MODEL_SHA256:
            raise ModelError(f"bundled model {self.model_path} is corrupt (sha256 {self.sha256}); reinstall faceagent")

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads otherwise spin and burn a core between frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"detector model {self.model_path} cannot be loaded: {exc}") from None
        self._check_signature()
        self._tensor = np.zeros((1, 3, input_size[1], input_size[0]), dtype=np.float32)
        self._crop_tensor = np.zeros((1, 3, CROP_INPUT_PX, CROP_INPUT_PX), dtype=np.float32)
        self.warm_up()
        log.info(
            "detector ready: %s (sha256 %s...), input %dx%d, %d thread(s), %s",
            self.model_path.name, self.sha256[:12], *input_size, self.threads,
            f"two-pass (at most {max_crop_checks} crop checks)" if cascade else "one pass",
        )

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = [(i.name, i.shape) for i in inputs]
            raise ModelError(f"detector model {self.model_path.name} does not fit: expected one NCHW 3-channel input, got {shapes}")
        self.input_name = inputs[0].name
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        for name, last in OUTPUTS.items():
            shape = outputs.get(name)
            if shape is None or len(shape) != 3 or shape[-1] != last:
                raise ModelError(
                    f"detector model {self.model_path.name} does not fit: expected outputs loc[..,4], conf[..,2], landmarks[..,10]; "
                    f"got {outputs}"
                )

    def warm_up(self) -> None:
        """One inference per input shape so the first real frame is not slow (do it before reporting READY)."""
        self.infer(np.zeros_like(self._tensor))
        if self.cascade:
            self.infer(np.zeros_like(self._crop_tensor))

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Model-only inference on a prepared tensor."""
        loc, conf, lms = self.session.run(list(OUTPUTS), {self.input_name: tensor})
        return {"loc": loc, "conf": conf, "landmarks": lms}

    def first_pass(self, frame: np.ndarray, detect_image: np.ndarray | None, threshold: float) -> tuple[list[Face], float]:
        """(faces in `frame` pixels, first-pass input pixels per frame pixel), the model run on the small input.

        The pixels come from `detect_image` when given (a smaller image of the same instant and field of
        view, of any aspect); it is resized to the frame's aspect, so faces keep their shape.
        """
        height, width = frame.shape[:2]
        source = frame if detect_image is None else detect_image
        tensor, fit = letterbox(source, *self.input_size, out=self._tensor, target=(width, height))
        faces = postprocess(self.infer(tensor), fit, threshold, self.nms_threshold)
        # Upscaling a detection image adds no detail: the finer of the two grids is what the model saw.
        scale = min(1.0 / fit.to_x, 1.0 / fit.to_y, source.shape[1] / width, source.shape[0] / height)
        return faces, scale

    def check_in_crop(self, frame: np.ndarray, candidate: Face) -> Face | None:
        """The candidate confirmed (and re-measured) in a small crop of `frame`, or None."""
        window = crop_window(candidate)
        patch = cut_square(frame, window.x, window.y, window.side)
        tensor, fit = letterbox(patch, CROP_INPUT_PX, CROP_INPUT_PX, out=self._crop_tensor)
        found = postprocess(self.infer(tensor), fit, self.score_threshold, self.nms_threshold)
        return confirm(candidate, [f.moved(window.x, window.y) for f in found])

    def detect(self, frame: np.ndarray, detect_image: np.ndarray | None = None) -> list[Face]:
        """Faces in a BGR uint8 frame of any size, in its pixels, best score first.

        `detect_image`: the same instant as a smaller image (picamera2's `lores` stream); the first
        pass runs on it, crop checks on `frame`, and every box and landmark is in `frame` pixels.
        """
        if not self.cascade:
            self.last_crop_checks = 0
            return self.first_pass(frame, detect_image, self.score_threshold)[0]
        candidates, scale = self.first_pass(frame, detect_image, self.candidate_threshold)
        faces, self.last_crop_checks = second_pass(
            candidates, lambda c: self.check_in_crop(frame, c), scale, self.score_threshold, self.max_crop_checks
        )
        return without_duplicates(faces, self.nms_threshold)

    @property
    def model_name(self) -> str:
        return self.model_path.name

    def describe(self) -> dict[str, Any]:
        """Model, checksum and settings, for the daemon's state message and the benchmarks."""
        return {
            "model": self.model_name, "sha256": self.sha256, "input": list(self.input_size), "threads": self.threads,
            "cascade": self.cascade, "max_crop_checks": self.max_crop_checks if self.cascade else 0,
        }


def detector_from_config(cfg: DetectorConfig) -> FaceDetector:
    """The detector the config asks for."""
    return FaceDetector(
        cfg.model_path, (cfg.input_width, cfg.input_height), threads=cfg.threads, score_threshold=cfg.score_threshold,
        nms_threshold=cfg.nms_threshold, cascade=cfg.cascade, candidate_threshold=cfg.candidate_threshold,
        max_crop_checks=cfg.max_crop_checks,
    )
