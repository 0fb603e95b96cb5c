"""Liveness at enrollment: every image the device would upload is first scored by IAI's DetectLiveFaceAccurate.

A score below `liveness.threshold` ends the command `spoof_suspected` before anything is written (no CreatePerson,
no CreateFace). What it catches and what it does not is in the README ("Liveness"); the call is billed per image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.iai.client import IaiClient
from agent.iai.errors import SpoofSuspected

log = logging.getLogger(__name__)


def check_liveness(client: IaiClient, images: list[bytes], threshold: float, progress: Callable[[str, str], None]) -> list[float]:
    """The score of each image, in order; raises `SpoofSuspected` (with the scores so far) at the first one below `threshold`."""
    scores: list[float] = []
    progress("liveness", f"checking {len(images)} image(s) for a live face at the cloud")
    for index, image in enumerate(images):
        answer = client.detect_live_face_accurate(image)
        scores.append(answer.score)
        log.info("liveness of image %d: score %g (threshold %g, RequestId %s)", index, answer.score, threshold, answer.request_id)
        if answer.score < threshold:
            error = SpoofSuspected(answer.score, threshold, answer.request_id)
            error.scores = scores
            raise error
    progress("liveness", f"live face confirmed (score{'s' if len(scores) > 1 else ''} {', '.join(f'{s:g}' for s in scores)})")
    return scores


def liveness_json(threshold: float, scores: list[float]) -> dict[str, Any]:
    """The result's `liveness` object: the check was made, with what threshold, and each image's score."""
    return {"mode": "cloud", "threshold": threshold, "scores": list(scores)}
