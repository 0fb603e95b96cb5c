"""`faceagent bench`: detector latency per input size and thread count, pipeline overhead, and a Haar baseline.

On two frame sets: the six test photos (512-640 px) and 1280x720 captures composed from them (one
person each, as during an enrollment). `--recall` adds the side-by-side recall and cost of every
detector setting (agent/devtools/bench_recall.py). Figures, never assertions: they are written down in
docs/benchmarks.md per machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import DetectorConfig
from agent.errors import ExitCode

SIZES = ((320, 180), (320, 240), (640, 480))
CAPTURE_FRAMES = 8  # composed 1280x720 one-person frames
DEFAULT_INPUT = (DetectorConfig().input_width, DetectorConfig().input_height)
# The public-domain photos shipped with the tests: (file, has a face the detector should find).
PHOTOS = (
    ("astronaut.png", True), ("grace_hopper.jpg", True), ("camera.png", True),
    ("chelsea.png", False), ("coffee.png", False), ("rocket.jpg", False),
)


def bench_frames() -> list[tuple[str, np.ndarray, bool]]:
    """Real frames to time on: the test photos when present (a source checkout), else the bundled demo photos."""
    from agent.images import read_image

    here = Path(__file__).resolve().parents[2] / "tests" / "data"
    demo = Path(__file__).resolve().parent / "demo_photos"
    folder = here if here.is_dir() else demo
    return [(name, read_image(folder / name), has_face) for name, has_face in PHOTOS if (folder / name).exists()]


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def interleaved_medians_ms(fns: tuple[Callable[[], object], ...], repeat: int) -> list[float]:
    """Median time of each function, run in turns so that drift on a busy machine hits all alike."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, bucket in zip(fns, samples):
            start = time.perf_counter()
            fn()
            bucket.append((time.perf_counter() - start) * 1000)
    return [statistics.median(bucket) for bucket in samples]


Frames = list[tuple[np.ndarray, np.ndarray | None]]  # (capture frame, detection image or None)


def model_calls(detector: Any, frames: Frames) -> list[np.ndarray]:
    """Copies of every tensor `detect` hands the model for `frames` (first passes and crop checks)."""
    calls: list[np.ndarray] = []
    infer = detector.infer

    def recording(tensor: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(tensor.copy())
        return infer(tensor)

    detector.infer = recording
    try:
        for frame, small in frames:
            detector.detect(frame, small)
    finally:
        del detector.infer
    return calls


def bench_detector(frames: Frames, size: tuple[int, int], threads: int, repeat: int, cascade: bool = False) -> dict[str, Any]:
    """Model-only time against the whole `detect` + quality path, per frame.

    `inference_ms` runs exactly the tensors the pipeline gives the model on these frames (with the
    two-pass detector, its crop checks too), so `ratio` is the cost of everything around the model.
    """
    from agent.vision.detector import FaceDetector
    from agent.vision.quality import measure

    detector = FaceDetector(input_size=size, threads=threads, cascade=cascade)
    tensors = model_calls(detector, frames)

    def inference() -> None:
        for t in tensors:
            detector.infer(t)

    def pipeline() -> None:
        for f, small in frames:
            for face in detector.detect(f, small):
                measure(f, face)

    inference_ms, pipeline_ms = (ms / len(frames) for ms in interleaved_medians_ms((inference, pipeline), repeat))
    return {
        "input": list(size), "threads": threads, "cascade": cascade, "model_calls_per_frame": round(len(tensors) / len(frames), 2),
        "inference_ms": round(inference_ms, 2), "pipeline_ms": round(pipeline_ms, 2),
        "ratio": round(pipeline_ms / inference_ms, 3),
    }


def bench_haar(photos: list[tuple[str, np.ndarray, bool]], repeat: int) -> dict[str, Any]:
    """OpenCV's frontal-face Haar cascade (what picamera2's face example uses) on the same frames."""
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        return {"available": False}
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for _, f, _ in photos]

    def run() -> list[int]:
        return [len(cascade.detectMultiScale(g, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))) for g in greys]

    counts = run()
    with_face = [c for c, (_, _, has) in zip(counts, photos) if has]
    without = [c for c, (_, _, has) in zip(counts, photos) if not has]
    return {
        "available": True,
        "ms": round(median_ms(run, max(3, repeat // 3)) / len(photos), 2),
        "recall": round(sum(1 for c in with_face if c > 0) / max(1, len(with_face)), 3),
        "false_positive_images": sum(1 for c in without if c > 0),
    }


def detector_recall(photos: list[tuple[str, np.ndarray, bool]]) -> dict[str, Any]:
    """The default detector on the test photos: faces found, photos without a face that got one."""
    from agent.vision.detector import FaceDetector

    detector = FaceDetector(threads=1)
    found = [len(detector.detect(f)) for _, f, _ in photos]
    with_face = [c for c, (_, _, has) in zip(found, photos) if has]
    without = [c for c, (_, _, has) in zip(found, photos) if not has]
    return {"recall": round(sum(1 for c in with_face if c > 0) / max(1, len(with_face)), 3),
            "false_positive_images": sum(1 for c in without if c > 0)}


def machine() -> dict[str, Any]:
    import onnxruntime

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}


def cmd_bench(args: argparse.Namespace) -> int:
    import cv2

    from agent.devtools.scenes import one_person_scenes

    photos = bench_frames()
    captures = [s.image for s in one_person_scenes(CAPTURE_FRAMES)]
    # The Pi path: picamera2 delivers the detection stream at the detector's input size (no resize).
    lores = [cv2.resize(f, DEFAULT_INPUT, interpolation=cv2.INTER_AREA) for f in captures]
    frame_sets: dict[str, Frames] = {
        "photos": [(f, None) for _, f, _ in photos],
        "1280x720": [(f, None) for f in captures],
        f"1280x720 + {DEFAULT_INPUT[0]}x{DEFAULT_INPUT[1]} lores": list(zip(captures, lores)),
    }
    all_cores = os.cpu_count() or 1
    thread_counts = sorted({1, all_cores})
    report: dict[str, Any] = {"machine": machine(), "frames": [name for name, _, _ in photos], "detector": []}
    for set_name, frames in frame_sets.items():
        settings = [(size, False) for size in SIZES] if "lores" not in set_name else [(DEFAULT_INPUT, False)]
        for size, cascade in [*settings, (DEFAULT_INPUT, True)]:
            for threads in thread_counts:
                row = {"frames": set_name, **bench_detector(frames, size, threads, args.repeat, cascade)}
                report["detector"].append(row)
    report["detector_recall"] = detector_recall(photos)
    if args.recall:
        from agent.devtools.bench_recall import bench_recall

        report["recall"] = bench_recall(args.recall_frames)
    report["haar"] = bench_haar(photos, args.repeat)
    if args.daemon:
        from agent.devtools.bench_daemon import bench_daemon

        try:
            report["daemon"] = bench_daemon(args.idle_seconds)
        except (FileNotFoundError, OSError, RuntimeError) as exc:
            report["daemon"] = {"error": str(exc)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"machine: {report['machine']}")
        for row in report["detector"]:
            kind = "two-pass" if row["cascade"] else "one pass"
            print(f"detector {row['input'][0]}x{row['input'][1]} {kind} threads={row['threads']} on {row['frames']}: "
                  f"inference {row['inference_ms']} ms ({row['model_calls_per_frame']} model calls/frame), "
                  f"pipeline {row['pipeline_ms']} ms (x{row['ratio']})")
        print(f"detector recall on test photos: {report['detector_recall']}")
        if "recall" in report:
            from agent.devtools.bench_recall import format_recall

            print("\n".join(format_recall(report["recall"])))
        print(f"haar cascade: {report['haar']}")
        if "daemon" in report:
            print(f"daemon: {report['daemon']}")
    return ExitCode.OK
