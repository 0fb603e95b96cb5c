"""Draw an `Analysis` on a frame: every box with its score and landmarks, the chosen face, the verdict."""

from __future__ import annotations

import cv2
import numpy as np

from agent.vision.selection import Analysis

CHOSEN = (0, 200, 0)
USABLE = (0, 200, 255)
UNUSABLE = (0, 0, 230)
LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0))


def annotate(frame: np.ndarray, analysis: Analysis) -> np.ndarray:
    """A copy of `frame` with the analysis drawn on it."""
    out: np.ndarray = frame.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(max(h, w) / 400))
    font_scale = max(0.4, max(h, w) / 1200)
    for index, report in enumerate(analysis.faces):
        chosen = index == analysis.best
        colour = CHOSEN if chosen else (USABLE if report.usable else UNUSABLE)
        x1, y1, x2, y2 = (round(v) for v in report.face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness * (2 if chosen else 1))
        label = f"{'chosen ' if chosen else ''}{report.face.score:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness, cv2.LINE_AA)
        for (x, y), lm_colour in zip(report.face.landmarks, LANDMARK_COLOURS):
            cv2.circle(out, (round(x), round(y)), max(2, thickness + 1), lm_colour, -1, cv2.LINE_AA)
    banner = analysis.verdict if analysis.ok else f"{analysis.verdict}: {analysis.detail}"
    cv2.rectangle(out, (0, 0), (w, int(28 * font_scale / 0.4 * 0.6) + 6), (0, 0, 0), -1)
    cv2.putText(out, banner[:90], (4, int(18 * font_scale / 0.4 * 0.6) + 2), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, CHOSEN if analysis.ok else UNUSABLE, thickness, cv2.LINE_AA)
    return out
