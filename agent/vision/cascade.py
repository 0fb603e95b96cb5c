"""The detector's second pass: each doubtful candidate of a cheap first pass is checked in a small crop of the
full-resolution frame.

The first pass runs on a small input (320x180 for a 1280x720 capture), where the model's smallest anchor
(16 px) is a 64 px face in the capture. Faces down to ~36 px still answer there, but at low scores and
among a few false candidates, and with landmarks on a 4x coarser grid. Running the model again on a
square cut around the candidate from the capture frame, scaled so the face is ~48 px in a 96x96 input,
answers both questions at once: is it a face (scored at a size the model sees well), and where exactly
are its box and landmarks (measured at capture resolution, so the quality rules can trust them).

Which candidates are checked, and the bound: see `second_pass`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.vision.face import Face, iou

CROP_CONTEXT = 2.0  # crop side / longer side of the candidate box: the head plus margin for a loose first-pass box
CROP_INPUT_PX = 96  # model input side of one crop check: 0.16x the pixels of a 320x180 first pass
REFINE_BELOW_PX = 24.0  # confident faces smaller than this at the first-pass input still get a crop check (coarse landmarks)
MIN_MATCH_IOU = 0.3  # the face found in the crop must overlap the candidate's (coarse) box this much


@dataclass(frozen=True)
class CropWindow:
    """A square of the full-resolution frame, (x, y) its top-left corner; it may reach past the frame edge."""

    x: int
    y: int
    side: int


def crop_window(candidate: Face) -> CropWindow:
    """The square around a candidate that one crop check looks at."""
    x1, y1, x2, y2 = candidate.box
    side = max(8, int(math.ceil(max(x2 - x1, y2 - y1) * CROP_CONTEXT)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return CropWindow(int(round(cx - side / 2)), int(round(cy - side / 2)), side)


def needs_check(candidate: Face, first_pass_scale: float, score_threshold: float) -> bool:
    """Whether a first-pass candidate must be confirmed in a crop before it counts as a face.

    `first_pass_scale` is first-pass input pixels per capture pixel. A candidate below the score
    threshold is in doubt; a confident one is taken as it is unless it is so small at the first pass
    that its landmarks (and so the pose and eye-distance rules) are too coarse to trust.
    """
    return candidate.score < score_threshold or candidate.short_side * first_pass_scale < REFINE_BELOW_PX


def confirm(candidate: Face, found: Sequence[Face]) -> Face | None:
    """The face found in the crop (frame pixels) that is the candidate, or None when the crop shows no such face."""
    best = max(found, key=lambda f: iou(f.box, candidate.box), default=None)
    if best is None or iou(best.box, candidate.box) < MIN_MATCH_IOU:
        return None
    return best


def second_pass(
    candidates: Sequence[Face],
    check: Callable[[Face], Face | None],
    first_pass_scale: float,
    score_threshold: float,
    max_checks: int,
) -> tuple[list[Face], int]:
    """(confirmed faces, crop checks made) from first-pass candidates (frame pixels).

    Candidates are taken largest first, because the largest faces decide the verdict (the target and
    the multiple-face rule). At most `max_checks` crops are checked per frame, so a crowd costs a
    bounded amount; past the bound a candidate counts only if its first-pass score alone reaches the
    threshold (what a single-pass detector would have answered).
    """
    kept: list[Face] = []
    checks = 0
    for candidate in sorted(candidates, key=lambda f: f.area, reverse=True):
        if not needs_check(candidate, first_pass_scale, score_threshold):
            kept.append(candidate)
        elif checks < max_checks:
            checks += 1
            confirmed = check(candidate)
            if confirmed is not None:
                kept.append(confirmed)
        elif candidate.score >= score_threshold:
            kept.append(candidate)
    return kept, checks
