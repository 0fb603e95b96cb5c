"""SearchFaces: the faces of one image against the faces of up to 100 groups, one candidate per person.

Scores are the similarity emulation of images.py: the exact same image bytes as a stored face score 100, any
other image at most 90. A candidate's FaceId is that person's best-matching face.
"""

from __future__ import annotations

from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.images import SeenFace
from agent.devtools.emulator.uploads import controls, single_image, threshold


def _groups(ctx: Context, p: Params) -> tuple[list[str], str]:
    """The searched GroupIds (1-100, each existing) and their common FaceModelVersion."""
    group_ids = list(dict.fromkeys(p.required("GroupIds")))
    if len(group_ids) > limits.SEARCH_MAX_GROUP_IDS:
        raise ApiError("InvalidParameterValue.GroupIdsExceed", f"At most {limits.SEARCH_MAX_GROUP_IDS} GroupIds.")
    versions = {str(ctx.state.group(gid).get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION)) for gid in group_ids}
    if len(versions) > 1:
        raise ApiError("FailedOperation.AcrossVersionsError", "Groups of different FaceModelVersions cannot be searched together.")
    return group_ids, versions.pop()


def _candidates(ctx: Context, face: SeenFace, group_ids: list[str], need_info: bool) -> list[dict[str, Any]]:
    """One candidate per person of the groups (its best face), best score first."""
    found = []
    for person_id, person in ctx.state.persons.items():
        groups = [gid for gid in person.groups if gid in group_ids]
        if not groups:
            continue
        score, face_id = ctx.state.best_face(person_id, face.print)
        if face_id is None:
            continue
        candidate: dict[str, Any] = {"PersonId": person_id, "FaceId": face_id, "Score": score,
                                     "PersonName": None, "Gender": None, "PersonGroupInfos": None}
        if need_info:
            candidate.update(PersonName=person.name, Gender=person.gender, PersonGroupInfos=[
                {"GroupId": gid, "PersonExDescriptions": list(person.descriptions.get(gid, []))} for gid in groups])
        found.append(candidate)
    return sorted(found, key=lambda c: -float(c["Score"]))


def search_faces(ctx: Context, p: Params) -> Prepared:
    group_ids, version = _groups(ctx, p)
    max_faces = int(p.get("MaxFaceNum", 1))
    if max_faces > limits.SEARCH_MAX_FACE_NUM:
        raise ApiError("LimitExceeded.ErrorFaceNumExceed", f"MaxFaceNum must be at most {limits.SEARCH_MAX_FACE_NUM}.")
    max_persons = int(p.get("MaxPersonNum", limits.SEARCH_DEFAULT_PERSON_NUM))
    if max_persons > limits.SEARCH_MAX_PERSON_NUM:
        raise ApiError("InvalidParameterValue.SearchPersonsExceed", f"MaxPersonNum must be at most {limits.SEARCH_MAX_PERSON_NUM}.")
    min_face_size = int(p.get("MinFaceSize", limits.MIN_FACE_SIZE))
    if min(max_faces, max_persons, min_face_size) < 1:
        raise ApiError("InvalidParameterValue", "MaxFaceNum, MaxPersonNum and MinFaceSize must be at least 1.")
    need_info = p.get("NeedPersonInfo", 0) == 1  # "other values than 0 and 1 count as 0"
    quality = controls(p)
    match_threshold = threshold(p, 0.0)
    seen = single_image(ctx.checker, p)
    faces = [f for f in seen.faces[:max_faces] if min(f.box[2], f.box[3]) >= max(min_face_size, limits.MIN_FACE_SIZE)]
    if not faces:
        raise ApiError("FailedOperation.FaceSizeTooSmall", "Every face is smaller than MinFaceSize.")

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            face_num = sum(len(person.faces) for person in ctx.state.persons.values() if set(person.groups) & set(group_ids))
            if face_num == 0:
                raise ApiError("InvalidParameterValue.NoFaceInGroups", "The searched groups hold no face.")
            results = []
            for face in faces:
                if face.quality < quality:
                    results.append({"Candidates": [], "FaceRect": face.rect(), "RetCode": limits.RET_QUALITY})
                    continue
                candidates = [c for c in _candidates(ctx, face, group_ids, need_info) if c["Score"] >= match_threshold]
                results.append({"Candidates": candidates[:max_persons], "FaceRect": face.rect(), "RetCode": limits.RET_OK})
        return {"Results": results, "FaceNum": face_num, "FaceModelVersion": version}

    return Prepared(apply)
