"""`faceagent bench`: detector latency per input size and thread count, pipeline overhead, and a Haar baseline.

Figures, never assertions: they are written down in docs/benchmarks.md per machine. `--config` benches the
configured detector (its model, and its input size and threads beside the standard ones). Progress goes to
stderr, a table to stdout (`--json`: one object).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ExitCode

SIZES = ((320, 240), (640, 480))
# The public-domain photos shipped with the tests: (file, has a face the detector should find).
PHOTOS = (
    ("astronaut.png", True), ("grace_hopper.jpg", True), ("camera.png", True),
    ("chelsea.png", False), ("coffee.png", False), ("rocket.jpg", False),
)


def photo_folder() -> Path:
    """The six test photos in a source checkout (docs/benchmarks.md uses them), else the three shipped with the package."""
    checkout = Path(__file__).resolve().parents[2] / "tests" / "data"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "demo_photos"


def bench_frames(folder: Path) -> list[tuple[str, np.ndarray, bool]]:
    """Real frames to time on, with whether each holds a face the detector should find."""
    from agent.images import read_image

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


def bench_detector(frames: list[np.ndarray], size: tuple[int, int], threads: int, repeat: int, model: Path | None = None) -> dict[str, Any]:
    from agent.vision.detector import FaceDetector, letterbox
    from agent.vision.quality import measure

    detector = FaceDetector(model, input_size=size, threads=threads)
    tensors = [letterbox(f, *size)[0] for f in frames]

    def inference() -> None:
        for t in tensors:
            detector.infer(t)

    def pipeline() -> None:
        for f in frames:
            for face in detector.detect(f):
                measure(f, face)

    inference_ms, pipeline_ms = (ms / len(frames) for ms in interleaved_medians_ms((inference, pipeline), repeat))
    return {
        "input": list(size), "threads": threads,
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


def detector_recall(photos: list[tuple[str, np.ndarray, bool]], model: Path | None = None) -> dict[str, Any]:
    from agent.vision.detector import FaceDetector

    detector = FaceDetector(model, input_size=SIZES[0], threads=1)
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


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def settings(config: Any) -> list[tuple[tuple[int, int], int]]:
    """(input size, threads) to time: the standard sizes on 1 thread and all cores, plus the configured detector's."""
    from agent.vision.detector import default_threads

    all_cores = os.cpu_count() or 1
    wanted = [(size, threads) for size in SIZES for threads in sorted({1, all_cores})]
    configured = ((config.detector.input_width, config.detector.input_height), config.detector.threads or default_threads())
    return wanted if configured in wanted else [*wanted, configured]


def cmd_bench(args: argparse.Namespace) -> int:
    from agent.cli.common import fail, optional_config
    from agent.vision.detector import default_threads

    config = optional_config(args)
    if not args.log_level and not os.environ.get("FACEAGENT_LOG_LEVEL"):
        logging.getLogger().setLevel(logging.WARNING)  # the progress lines say what runs; detector INFO lines would bury them
    model = config.detector.model_path
    folder = photo_folder()
    photos = bench_frames(folder)
    if not photos:
        return fail(f"no photos to time in {folder}: reinstall faceagent (they ship with it)", ExitCode.FAILED)
    frames = [f for _, f, _ in photos]
    report: dict[str, Any] = {"machine": machine(), "frames": [name for name, _, _ in photos], "frames_from": str(folder),
                              "model": str(model or "bundled"), "detector": []}
    runs = settings(config)
    configured = ((config.detector.input_width, config.detector.input_height), config.detector.threads or default_threads())
    report["configured"] = [*configured[0], configured[1]]
    for number, (size, threads) in enumerate(runs, 1):
        progress(f"detector {size[0]}x{size[1]}, {threads} thread(s): {args.repeat} runs over {len(frames)} photos ({number}/{len(runs)})")
        report["detector"].append(bench_detector(frames, size, threads, args.repeat, model))
    progress("recall on the photos, and the Haar cascade for comparison")
    report["detector_recall"] = detector_recall(photos, model)
    report["haar"] = bench_haar(photos, args.repeat)
    if args.daemon:
        from agent.devtools.bench_daemon import bench_daemon

        progress(f"the daemon: start to READY, idle CPU over {args.idle_seconds:g} s, RSS, local enrollment latency (needs mosquitto)")
        try:
            report["daemon"] = bench_daemon(args.idle_seconds, detector=config.detector.model_dump(mode="json"))
        except (FileNotFoundError, OSError, RuntimeError) as exc:
            report["daemon"] = {"error": str(exc)}
    print(json.dumps(report) if args.json else render(report))
    return ExitCode.OK


def render(report: dict[str, Any]) -> str:
    """The report as a table for a terminal."""
    m = report["machine"]
    lines = [f"machine   {m['cpu'] or 'unknown CPU'}, {m['cores']} core(s), {m['arch']}; Python {m['python']}, numpy {m['numpy']}, "
             f"onnxruntime {m['onnxruntime']}",
             f"frames    {len(report['frames'])} photos from {report['frames_from']}; model {report['model']}", "",
             "detector, median ms per frame", "  input     threads  inference  pipeline  pipeline/inference"]
    for row in report["detector"]:
        mark = "  (configured)" if [*row["input"], row["threads"]] == report["configured"] else ""
        size = f"{row['input'][0]}x{row['input'][1]}"
        lines.append(f"  {size:<9} {row['threads']:<8} {row['inference_ms']:<10} {row['pipeline_ms']:<9} {row['ratio']}{mark}")
    recall = report["detector_recall"]
    lines += ["", f"recall    {recall['recall']:.0%} of the photos with a face, false detections on {recall['false_positive_images']} "
                  "photo(s) without"]
    haar = report["haar"]
    if haar.get("available"):
        lines.append(f"haar      {haar['ms']} ms per photo, recall {haar['recall']:.0%}, false detections on "
                     f"{haar['false_positive_images']} photo(s)")
    daemon = report.get("daemon")
    if daemon and "error" in daemon:
        lines.append(f"daemon    not measured: {daemon['error']}")
    elif daemon:
        latency = ", ".join(f"{faces} face(s) {ms} ms" for faces, ms in daemon["enroll_local_ms"].items())
        lines.append(f"daemon    READY after {daemon['ready_s']} s, idle CPU {daemon['idle_cpu_percent']} % over "
                     f"{daemon['idle_seconds']:g} s, RSS {daemon['rss_mb']} MB; command to CreateFace: {latency}")
    return "\n".join(lines)
