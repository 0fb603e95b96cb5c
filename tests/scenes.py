"""Composed scenes with exact ground truth (the composition lives in agent/devtools/scenes.py, shared with the bench)."""

from __future__ import annotations

from agent.devtools.scenes import (
    TRUTH,
    Placed,
    Scene,
    background,
    face_patch,
    one_person_scenes,
    place,
    place_photo,
    recall_scenes,
)
from agent.vision.face import iou as box_iou

__all__ = [
    "TRUTH", "Placed", "Scene", "background", "box_iou", "face_patch", "one_person_scenes", "place", "place_photo", "recall_scenes",
]
