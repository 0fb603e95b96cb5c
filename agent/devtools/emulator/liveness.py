"""DetectLiveFaceAccurate (API 2020-03-03 only): a liveness score for the largest face of one still image.

The service scores with a model of its own; the emulator's score is deterministic (docs/emulator.md): a face
without colour (a grey print, an e-ink or monochrome screen) scores 5, any other face 90, unless the control
key `liveness_score_next` names the next score(s) exactly. IAI's rule that the face be larger than 100x100 px
is enforced (`FailedOperation.FaceSizeTooSmall`).
"""

from __future__ import annotations

from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.uploads import single_image

NOT_LIVE_SCORE = 5.0  # IAI's lowest tier: a photo of a photo
LIVE_SCORE = 90.0  # IAI's highest tier
GREY_FACE_COLOUR = 6.0  # a face whose mean B/G/R spread is below this has no colour (JPEG adds a little)


def detect_live_face_accurate(ctx: Context, p: Params) -> Prepared:
    version = str(p.get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION))
    if version not in limits.LIVENESS_FACE_MODEL_VERSIONS:
        raise ApiError("InvalidParameterValue.FaceModelVersionIllegal", "FaceModelVersion must be 3.0.")
    face = single_image(ctx.checker, p).largest
    if min(face.box[2], face.box[3]) < limits.LIVENESS_MIN_FACE_PX:
        raise ApiError("FailedOperation.FaceSizeTooSmall", f"The face must be larger than {limits.LIVENESS_MIN_FACE_PX}x"
                                                          f"{limits.LIVENESS_MIN_FACE_PX} pixels.")
    forced = ctx.faults.take_rule("liveness_score_next", "DetectLiveFaceAccurate")
    colour_score = NOT_LIVE_SCORE if face.colour < GREY_FACE_COLOUR else LIVE_SCORE
    score = float(forced.options["score"]) if forced is not None else colour_score

    def apply() -> dict[str, Any]:
        return {"Score": score, "FaceModelVersion": version}

    return Prepared(apply)
