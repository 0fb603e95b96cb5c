"""CreateGroup and GetGroupList, with IAI's rules for group ids, names, tags, descriptions and model versions."""

from __future__ import annotations

from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.state import now_ms


def _check_descriptions(names: list[str]) -> None:
    if len(names) > limits.GROUP_EX_DESCRIPTIONS_MAX:
        raise ApiError("InvalidParameterValue.GroupExDescriptionsExceed", f"At most {limits.GROUP_EX_DESCRIPTIONS_MAX} GroupExDescriptions.")
    for name in names:
        if not name:
            raise ApiError("InvalidParameterValue.GroupExDescriptionsNameIllegal", "A GroupExDescriptions name is empty.")
        if len(name) > limits.GROUP_EX_DESCRIPTION_MAX_CHARS:
            raise ApiError("InvalidParameterValue.GroupExDescriptionsNameTooLong",
                           f"A GroupExDescriptions name is longer than {limits.GROUP_EX_DESCRIPTION_MAX_CHARS} characters.")
    if len(set(names)) != len(names):
        raise ApiError("InvalidParameterValue.GroupExDescriptionsNameIdentical", "GroupExDescriptions names must differ.")


def create_group(ctx: Context, p: Params) -> Prepared:
    group_id = p.identifier("GroupId")
    name = p.name("GroupName")
    tag = str(p.get("Tag", ""))
    if len(tag) > limits.TAG_MAX_CHARS:
        raise ApiError("InvalidParameterValue.GroupTagTooLong", f"Tag is longer than {limits.TAG_MAX_CHARS} characters.")
    descriptions = list(p.get("GroupExDescriptions", []))
    _check_descriptions(descriptions)
    version = str(p.get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION))
    if version not in limits.FACE_MODEL_VERSIONS:
        raise ApiError("InvalidParameterValue.FaceModelVersionIllegal", f"FaceModelVersion must be one of {', '.join(limits.FACE_MODEL_VERSIONS)}.")

    def check_unique() -> None:
        if group_id in ctx.state.groups:
            raise ApiError("InvalidParameterValue.GroupIdAlreadyExist", f"The group {group_id} already exists.")
        if any(g["GroupName"] == name for g in ctx.state.groups.values()):
            raise ApiError("InvalidParameterValue.GroupNameAlreadyExist", f"A group named {name!r} already exists.")

    check_unique()

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            check_unique()
            stamp = now_ms()
            ctx.state.groups[group_id] = {"GroupName": name, "FaceModelVersion": version, "Tag": tag,
                                          "GroupExDescriptions": descriptions, "CreationTimestamp": stamp, "UpdateTimestamp": stamp}
            ctx.state.save()
        return {"FaceModelVersion": version}

    return Prepared(apply)


def page(p: Params, max_limit: int) -> tuple[int, int]:
    """(Offset, Limit) of a listing: Offset >= 0, Limit 1..max_limit (InvalidParameterValue.LimitExceed above)."""
    offset = int(p.get("Offset", 0))
    if offset < 0:
        raise ApiError("InvalidParameterValue", "Offset must be >= 0.")
    limit = int(p.get("Limit", limits.DEFAULT_PAGE_LIMIT))
    if limit > max_limit:
        raise ApiError("InvalidParameterValue.LimitExceed", f"Limit must be at most {max_limit}.")
    if limit < 1:
        raise ApiError("InvalidParameterValue", "Limit must be at least 1.")
    return offset, limit


def get_group_list(ctx: Context, p: Params) -> Prepared:
    offset, limit = page(p, limits.GROUP_LIST_MAX_LIMIT)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            groups = sorted(ctx.state.groups.items())
            infos = [{"GroupId": gid, "GroupName": g["GroupName"], "FaceModelVersion": g.get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION),
                      "GroupExDescriptions": g.get("GroupExDescriptions", []), "Tag": g.get("Tag", ""),
                      "CreationTimestamp": g.get("CreationTimestamp", 0), "UpdateTimestamp": g.get("UpdateTimestamp", g.get("CreationTimestamp", 0))}
                     for gid, g in groups[offset : offset + limit]]
        return {"GroupInfos": infos, "GroupNum": len(groups)}

    return Prepared(apply)
