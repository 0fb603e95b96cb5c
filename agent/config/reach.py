"""What the detector can see, in capture pixels, and the check that `quality.min_face_px` asks no more of it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config.schema import Config


# What the bundled RetinaFace can see, in pixels of its input: its smallest anchor is 16 px. One pass
# finds >= 95 % of faces from 1.5x that (24 px); the two-pass detector, whose crop checks confirm
# low-score first-pass candidates, from the anchor itself (16 px). Measured on composed 1280x720 frames
# at four input sizes (`faceagent bench --recall`, docs/benchmarks.md "Recall by face size").
SMALLEST_ANCHOR_PX = 16.0

ONE_PASS_REACH = 1.5

TWO_PASS_REACH = 1.0


def first_pass_scale(capture: tuple[int, int], detector_input: tuple[int, int], detect_stream: tuple[int, int] | None = None) -> float:
    """Detector-input pixels per capture pixel in the first pass (the coarser of the input and the detection stream)."""
    scale = min(detector_input[0] / capture[0], detector_input[1] / capture[1])
    if detect_stream is not None:
        scale = min(scale, detect_stream[0] / capture[0], detect_stream[1] / capture[1])
    return scale


def smallest_face_px(
    capture: tuple[int, int], detector_input: tuple[int, int], cascade: bool, detect_stream: tuple[int, int] | None = None
) -> float:
    """The smallest face (shorter box side, capture pixels) the detector finds reliably: the one place this is stated.

    A capture frame of `capture` (w, h) is fitted into `detector_input` keeping its aspect, so one
    capture pixel is `s = first_pass_scale(...)` input pixels (with a detection stream, such as
    picamera2's `lores`, the coarser of that stream and the input: upscaling adds no detail). The
    detector finds faces down to SMALLEST_ANCHOR_PX x reach / s, reach 1.5 for one pass and 1.0 for
    the two-pass detector. For a 1280x720 capture: 320x180 two-pass 64 px, one pass 96 px; 480x270
    two-pass 43 px, one pass 64 px; 640x360 two-pass 32 px, one pass 48 px. `quality.min_face_px`
    must be at least this, or the rule would accept faces the detector does not report (answering
    `no_face` where "move closer" is right); config validation refuses such combinations.
    """
    reach = SMALLEST_ANCHOR_PX * (TWO_PASS_REACH if cascade else ONE_PASS_REACH)
    return reach / first_pass_scale(capture, detector_input, detect_stream)


def detector_reach_problem(config: Config) -> tuple[str, str] | None:
    """(key, reason) when `quality.min_face_px` accepts faces smaller than the detector finds (see `smallest_face_px`)."""
    cam, det = config.camera, config.detector
    capture = (cam.width, cam.height)
    stream = (cam.lores_width, cam.lores_height) if cam.type == "picamera2" else None
    smallest = math.ceil(smallest_face_px(capture, (det.input_width, det.input_height), det.cascade, stream) - 1e-9)
    if config.quality.min_face_px >= smallest:
        return None
    seen_by = f"camera.width x height {capture[0]}x{capture[1]}"
    if stream:
        seen_by += f", camera.lores_width x lores_height {stream[0]}x{stream[1]}"
    seen_by += f", detector.input_width x input_height {det.input_width}x{det.input_height}, detector.cascade {str(det.cascade).lower()}"
    grow = "detector.input_width/input_height" + (" and camera.lores_width/lores_height" if stream else "")
    return "quality.min_face_px", (
        f"{config.quality.min_face_px:g} px accepts faces the detector cannot see: with {seen_by} the smallest face it finds "
        f"is {smallest} px; raise quality.min_face_px to {smallest}" + ("" if det.cascade else ", turn on detector.cascade")
        + f" or enlarge {grow}"
    )
