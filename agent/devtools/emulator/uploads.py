"""The image fields of the actions: Url wins over Image, per the documentation, and the shared controls."""

from __future__ import annotations

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params
from agent.devtools.emulator.images import SINGLE_IMAGE_ERRORS, Examined, FaceChecker, examine


def refuse_urls(urls: list[str]) -> None:
    """Urls are used whenever given ("if both are given, only Url is used"); the emulator never downloads."""
    for url in urls:
        if not limits.URL_RE.match(url):
            raise ApiError("InvalidParameterValue.UrlIllegal", "The image URL is not a valid http(s) URL.")
    raise ApiError("FailedOperation.ImageDownloadError", "The emulator does not download image URLs: send the image itself.")


def single_image(checker: FaceChecker, p: Params) -> Examined:
    """The one image of CreatePerson or SearchFaces (`Url` or `Image`), accepted or refused with the action's code."""
    if p.has("Url"):
        refuse_urls([str(p.get("Url"))])
    if not p.has("Image"):
        raise ApiError("InvalidParameterValue.ImageEmpty", "Image or Url is required.")
    seen = examine(p.get("Image"), checker)
    if seen.reason is not None:
        raise ApiError(*SINGLE_IMAGE_ERRORS[seen.reason])
    return seen


def controls(p: Params) -> int:
    """QualityControl (0-4, QualityControlIllegal otherwise), after checking NeedRotateDetection is 0 or 1."""
    p.int_in("NeedRotateDetection", range(2), 0)
    return p.int_in("QualityControl", limits.CONTROL_LEVELS, 0, "InvalidParameterValue.QualityControlIllegal")


def threshold(p: Params, default: float) -> float:
    """FaceMatchThreshold within [0, 100] (FaceMatchThresholdIllegal otherwise)."""
    return p.float_in("FaceMatchThreshold", limits.THRESHOLD_MIN, limits.THRESHOLD_MAX, default,
                      "InvalidParameterValue.FaceMatchThresholdIllegal")

