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

log = logging.getLogger(__name__)

MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
OUTPUTS = {"loc": 4, "conf": 2, "landmarks": 10}


@dataclass(frozen=True)
class Face:
    """One detected face in source-frame pixels.

    `box` is (x1, y1, x2, y2) as floats (it may reach past the frame edge); `landmarks` is 5x2:
    image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def xywh(self) -> list[int]:
        """`[x, y, width, height]` rounded to pixels (contract §1 `box`)."""
        x1, y1, x2, y2 = self.box
        return [round(x1), round(y1), round(x2 - x1), round(y2 - y1)]


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
    """How a frame was fitted into the detector input: input = frame * scale, padded right/bottom."""

    scale: float
    width: int
    height: int


def shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to width x height: exact halvings (area-averaged) first, then one bilinear step.

    Bilinear alone aliases past ~2.5x reduction; INTER_AREA at odd ratios costs 3-8x more than this.
    """
    h, w = frame.shape[:2]
    while w >= 2.5 * width and h >= 2.5 * height:
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def letterbox(frame: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Fit `frame` into width x height keeping its aspect (padded right and bottom); NCHW float32 tensor.

    Padding is 0 after mean subtraction, i.e. the mean colour, as in training. `out`, when given, is a
    reusable 1x3xHxW float32 buffer (a fresh 1 MB array per frame costs page faults on every call).
    """
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = shrink(frame, new_w, new_h)
    if out is None:
        tensor = np.zeros((1, 3, height, width), dtype=np.float32)
    else:
        tensor = out
        tensor.fill(0.0)
    # Per-plane subtraction writes contiguously; one strided HWC->CHW subtract is 3x slower.
    for channel, plane in enumerate(cv2.split(resized)):
        np.subtract(plane, np.float32(MEAN_BGR[channel]), out=tensor[0, channel, :new_h, :new_w])
    return tensor, Letterbox(scale, width, height)


def postprocess(
    outputs: dict[str, np.ndarray], fit: Letterbox, score_threshold: float, nms_threshold: float
) -> list[Face]:
    """Raw model outputs -> faces in source-frame pixels, best score first."""
    priors = prior_boxes(fit.width, fit.height)
    scores = outputs["conf"][0, :, 1]
    candidates = np.flatnonzero(scores > score_threshold)
    if candidates.size == 0:
        return []
    scale_xy = np.asarray([fit.width, fit.height], dtype=np.float32)
    boxes = decode_boxes(outputs["loc"][0, candidates], priors[candidates]) * np.tile(scale_xy, 2)
    lms = decode_landmarks(outputs["landmarks"][0, candidates], priors[candidates]) * scale_xy
    kept = nms(boxes, scores[candidates], nms_threshold)
    boxes, lms, kept_scores = boxes[kept] / fit.scale, lms[kept] / fit.scale, scores[candidates][kept]
    return [
        Face(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s), landmarks=lm.astype(np.float64))
        for b, s, lm in zip(boxes, kept_scores, lms)
    ]


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
    """A loaded, warmed-up detector with a fixed input size. Not thread-safe: one per worker."""

    def __init__(
        self,
        model_path: Path | None = None,
        input_size: tuple[int, int] = (320, 240),
        threads: int = 0,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.4,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        self.input_size = input_size
        self.threads = threads or default_threads()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
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
        self.warm_up()
        log.info(
            "detector ready: %s (sha256 %s...), input %dx%d, %d thread(s)",
            self.model_path.name, self.sha256[:12], *input_size, self.threads,
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
        """One inference so the first real frame is not slow (do it before reporting READY)."""
        width, height = self.input_size
        self.infer(np.zeros((1, 3, height, width), dtype=np.float32))

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Model-only inference on a prepared tensor."""
        loc, conf, lms = self.session.run(list(OUTPUTS), {self.input_name: tensor})
        return {"loc": loc, "conf": conf, "landmarks": lms}

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in a BGR uint8 frame of any size, best score first."""
        tensor, fit = letterbox(frame, *self.input_size, out=self._tensor)
        return postprocess(self.infer(tensor), fit, self.score_threshold, self.nms_threshold)

    @property
    def model_name(self) -> str:
        return self.model_path.name

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "sha256": self.sha256, "input": list(self.input_size), "threads": self.threads}


def detector_from_config(cfg: DetectorConfig) -> FaceDetector:
    """The detector the config asks for."""
    return FaceDetector(cfg.model_path, (cfg.input_width, cfg.input_height), cfg.threads, cfg.score_threshold, cfg.nms_threshold)
