"""Draw an `Analysis` on a frame: every box with its score and landmarks, the chosen face, the upload crop, the verdict."""

from __future__ import annotations

import cv2
import numpy as np

from agent.config import CropConfig
from agent.vision.crop import square_region
from agent.vision.selection import Analysis

CHOSEN = (0, 200, 0)
USABLE = (0, 200, 255)
UNUSABLE = (0, 0, 230)
CROP = (255, 255, 255)
LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0))
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(out: np.ndarray, text: str, x: int, y: int, *, colour: tuple[int, int, int], scale: float, thickness: int) -> int:
    """`text` on a black plate with its top-left at (x, y), kept inside the image; returns the plate's height."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, thickness * 2)
    h, w = out.shape[:2]
    x = max(0, min(x, w - tw - 2 * pad))
    y = max(0, min(y, h - th - base - 2 * pad))
    cv2.rectangle(out, (x, y), (x + tw + 2 * pad, y + th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(out, text, (x + pad, y + pad + th), FONT, scale, colour, thickness, cv2.LINE_AA)
    return th + base + 2 * pad


def _wrap(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, scale, thickness)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [""]


def annotate(frame: np.ndarray, analysis: Analysis, crop: CropConfig | None = None) -> np.ndarray:
    """A copy of `frame` with the analysis drawn on it; with `crop`, the square that would be uploaded for the chosen face."""
    out: np.ndarray = frame.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(max(h, w) / 500))
    font_scale = max(0.45, max(h, w) / 1400)  # about 10 px high on a 320 px detection frame: still readable
    banner = analysis.verdict if analysis.ok else f"{analysis.verdict}: {analysis.detail}"
    banner_lines = _wrap(banner, w - 12, font_scale, thickness)  # the whole verdict, never cut off
    line_height = cv2.getTextSize("Ag", FONT, font_scale, thickness)[0][1] + cv2.getTextSize("Ag", FONT, font_scale, thickness)[1]
    banner_bottom = len(banner_lines) * (line_height + 2 * max(2, thickness * 2))
    for index, report in enumerate(analysis.faces):
        chosen = index == analysis.best
        colour = CHOSEN if chosen else (USABLE if report.usable else UNUSABLE)
        x1, y1, x2, y2 = (round(v) for v in report.face.box)
        if chosen and crop is not None:
            cx, cy, side = square_region(report.face, crop.scale, crop.min_side_px)
            cv2.rectangle(out, (cx, cy), (cx + side, cy + side), CROP, thickness)
            _label(out, "upload crop", cx, cy + side + 1, colour=CROP, scale=font_scale * 0.9, thickness=thickness)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness * (2 if chosen else 1))
        label = f"{'chosen ' if chosen else ''}{report.face.score:.2f}"
        above = y1 - line_height - 2 * max(2, thickness * 2) - 1
        _label(out, label, x1, above if above >= banner_bottom else y2 + 2, colour=colour, scale=font_scale, thickness=thickness)
        for (x, y), lm_colour in zip(report.face.landmarks, LANDMARK_COLOURS):
            cv2.circle(out, (round(x), round(y)), max(2, thickness + 1), lm_colour, -1, cv2.LINE_AA)
    y = 0
    for line in banner_lines:
        y += _label(out, line, 0, y, colour=CHOSEN if analysis.ok else UNUSABLE, scale=font_scale, thickness=thickness)
    return out
