"""`faceagent bench`: detector latency per input size and thread count, pipeline overhead, and a Haar baseline.

On two frame sets: the six test photos (512-640 px) and 1280x720 captures composed from them (one
person each, as during an enrollment), plus the Pi path (a small detection stream beside the capture).
`--recall` adds the side-by-side recall and cost of every detector setting (bench_recall.py); `--config`
benches the configured detector (its model, and its input size and threads beside the standard ones).
Progress goes to stderr, a table to stdout (`--json`: one object). Figures, never assertions: they are
written down in docs/benchmarks.md per machine.
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


def bench_detector(
    frames: Frames, size: tuple[int, int], threads: int, repeat: int, cascade: bool = False, model: Path | None = None,
) -> dict[str, Any]:
    """Model-only time against the whole `detect` + quality path, per frame.

    `inference_ms` runs exactly the tensors the pipeline gives the model on these frames (with the
    two-pass detector, its crop checks too), so `ratio` is the cost of everything around the model.
    """
    from agent.vision.detector import FaceDetector
    from agent.vision.quality import measure

    detector = FaceDetector(model, input_size=size, threads=threads, cascade=cascade)
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

    # The wheels ship the cascades under cv2.data; Debian's python3-opencv has no cv2.data and keeps them in opencv-data.
    folders = [Path(cv2.data.haarcascades)] if hasattr(cv2, "data") else []
    folders += [Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades")]
    path = next((f / "haarcascade_frontalface_default.xml" for f in folders if (f / "haarcascade_frontalface_default.xml").is_file()), None)
    cascade = cv2.CascadeClassifier(str(path)) if path is not None else None
    if cascade is None or cascade.empty():
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
    """The default detector on the test photos: faces found, photos without a face that got one."""
    from agent.vision.detector import FaceDetector

    detector = FaceDetector(model, threads=1)
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


def runs(config: Any, set_name: str) -> list[tuple[tuple[int, int], bool, int]]:
    """(input size, two-pass, threads) to time on one frame set: the standard settings, plus the configured detector's."""
    from agent.vision.detector import default_threads

    threads = sorted({1, os.cpu_count() or 1})
    sizes = [(size, False) for size in SIZES] if "lores" not in set_name else [(DEFAULT_INPUT, False)]
    wanted = [(size, cascade, t) for size, cascade in [*sizes, (DEFAULT_INPUT, True)] for t in threads]
    det = config.detector
    configured = ((det.input_width, det.input_height), det.cascade, det.threads or default_threads())
    return wanted if configured in wanted else [*wanted, configured]


def cmd_bench(args: argparse.Namespace) -> int:
    import cv2

    from agent.cli.common import fail, optional_config
    from agent.devtools.scenes import one_person_scenes
    from agent.vision.detector import default_threads

    config = optional_config(args)
    if not args.log_level and not os.environ.get("FACEAGENT_LOG_LEVEL"):
        logging.getLogger().setLevel(logging.WARNING)  # the progress lines say what runs; detector INFO lines would bury them
    model = config.detector.model_path
    folder = photo_folder()
    photos = bench_frames(folder)
    if not photos:
        return fail(f"no photos to time in {folder}: reinstall faceagent (they ship with it)", ExitCode.FAILED)
    progress(f"composing {CAPTURE_FRAMES} one-person 1280x720 frames")
    captures = [s.image for s in one_person_scenes(CAPTURE_FRAMES)]
    # The Pi path: picamera2 delivers the detection stream at the detector's input size (no resize).
    lores = [cv2.resize(f, DEFAULT_INPUT, interpolation=cv2.INTER_AREA) for f in captures]
    frame_sets: dict[str, Frames] = {
        "photos": [(f, None) for _, f, _ in photos],
        "1280x720": [(f, None) for f in captures],
        f"1280x720 + {DEFAULT_INPUT[0]}x{DEFAULT_INPUT[1]} lores": list(zip(captures, lores)),
    }
    det = config.detector
    report: dict[str, Any] = {"machine": machine(), "frames": [name for name, _, _ in photos], "frames_from": str(folder),
                              "model": str(model or "bundled"), "detector": [],
                              "configured": [det.input_width, det.input_height, det.cascade, det.threads or default_threads()]}
    todo = [(set_name, run) for set_name in frame_sets for run in runs(config, set_name)]
    for number, (set_name, (size, cascade, threads)) in enumerate(todo, 1):
        progress(f"{set_name}: {size[0]}x{size[1]} {'two-pass' if cascade else 'one pass'}, {threads} thread(s), "
                 f"{args.repeat} runs ({number}/{len(todo)})")
        report["detector"].append({"frames": set_name, **bench_detector(frame_sets[set_name], size, threads, args.repeat, cascade, model)})
    progress("recall on the photos, and the Haar cascade for comparison")
    report["detector_recall"] = detector_recall(photos, model)
    report["haar"] = bench_haar(photos, args.repeat)
    if args.recall:
        from agent.devtools.bench_recall import bench_recall

        progress(f"recall by face size on {args.recall_frames} composed frames, every detector setting")
        report["recall"] = bench_recall(args.recall_frames)
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
             "detector, median ms per frame",
             "  frames                     input    kind      threads  calls  inference  pipeline  pipeline/inference"]
    for row in report["detector"]:
        mark = "  (configured)" if [*row["input"], row["cascade"], row["threads"]] == report["configured"] else ""
        size = f"{row['input'][0]}x{row['input'][1]}"
        kind = "two-pass" if row["cascade"] else "one pass"
        lines.append(f"  {row['frames']:<26} {size:<8} {kind:<9} {row['threads']:<8} {row['model_calls_per_frame']:<6} "
                     f"{row['inference_ms']:<10} {row['pipeline_ms']:<9} {row['ratio']}{mark}")
    recall = report["detector_recall"]
    lines += ["", f"recall    {recall['recall']:.0%} of the photos with a face, false detections on {recall['false_positive_images']} "
                  "photo(s) without"]
    if "recall" in report:
        from agent.devtools.bench_recall import format_recall

        lines += format_recall(report["recall"])
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
