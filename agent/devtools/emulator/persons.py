"""CreatePerson, GetPersonBaseInfo, GetPersonGroupInfo, GetPersonListNum and DeletePerson."""

from __future__ import annotations

from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.groups import page
from agent.devtools.emulator.images import FacePrint
from agent.devtools.emulator.state import Person, now_ms
from agent.devtools.emulator.uploads import controls, single_image

# UniquePersonControl 1-4 ("1% ... 0.001% false matches"): the emulated score from which another person of the
# group counts as "probably the same person".
UNIQUE_PERSON_SCORES = {1: 70.0, 2: 80.0, 3: 90.0, 4: 100.0}


def _descriptions(p: Params, group: dict[str, Any]) -> list[str]:
    """PersonExDescriptionInfos as the values of the group's GroupExDescriptions fields, in their order."""
    infos = list(p.get("PersonExDescriptionInfos", []))
    if len(infos) > limits.GROUP_EX_DESCRIPTIONS_MAX:
        raise ApiError("InvalidParameterValue.PersonExDescriptionInfosExceed",
                       f"At most {limits.GROUP_EX_DESCRIPTIONS_MAX} PersonExDescriptionInfos.")
    fields = group.get("GroupExDescriptions", [])
    values = [""] * len(fields)
    seen: set[int] = set()
    for info in infos:
        unknown = set(info) - {"PersonExDescriptionIndex", "PersonExDescription"}
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `PersonExDescriptionInfos.{sorted(unknown)[0]}` is not recognized.")
        index, text = info.get("PersonExDescriptionIndex", 0), info.get("PersonExDescription", "")
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(text, str):
            raise ApiError("InvalidParameter", "PersonExDescriptionInfos need an Integer index and a String text.")
        if not 0 <= index < len(fields):
            raise ApiError("InvalidParameter", f"PersonExDescriptionIndex {index} has no GroupExDescriptions field in this group.")
        if index in seen:
            raise ApiError("InvalidParameterValue.PersonExDescriptionsNameIdentical", f"PersonExDescriptionIndex {index} is given twice.")
        if len(text) > limits.PERSON_EX_DESCRIPTION_MAX_CHARS:
            raise ApiError("InvalidParameterValue.PersonExDescriptionsNameTooLong",
                           f"A PersonExDescription is longer than {limits.PERSON_EX_DESCRIPTION_MAX_CHARS} characters.")
        seen.add(index)
        values[index] = text
    return values


def _similar_person(ctx: Context, group_id: str, face_print: FacePrint, level: int) -> str | None:
    """The group's person most similar to this face when it reaches the UniquePersonControl level's score."""
    if level == 0:
        return None
    best: tuple[float, str | None] = (0.0, None)
    with ctx.state.lock:
        for person_id, person in ctx.state.persons.items():
            if group_id in person.groups:
                score, _ = ctx.state.best_face(person_id, face_print)
                best = max(best, (score, person_id), key=lambda item: item[0])
    return best[1] if best[0] >= UNIQUE_PERSON_SCORES[level] else None


def create_person(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    group_id = p.identifier("GroupId")
    name = p.name("PersonName")
    gender = p.int_in("Gender", range(3), 0, "InvalidParameterValue.PersonGenderIllegal")
    unique = p.int_in("UniquePersonControl", limits.CONTROL_LEVELS, 0, "InvalidParameterValue.UniquePersonControlIllegal")
    quality = controls(p)
    group = ctx.state.group(group_id)
    descriptions = _descriptions(p, group)
    with ctx.state.claiming(person_id):
        if person_id in ctx.state.persons:
            raise ApiError("InvalidParameterValue.PersonIdAlreadyExist", f"The person {person_id} already exists.")
        face = single_image(ctx.checker, p).largest
        if face.quality < quality or ctx.faults.take_person("low_quality_next", person_id):
            raise ApiError("FailedOperation.FaceQualityNotQualified", "The face does not meet the requested QualityControl.")
    version = str(group.get("FaceModelVersion", limits.DEFAULT_FACE_MODEL_VERSION))

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            if person_id in ctx.state.persons:  # created meanwhile (a late application of an earlier attempt)
                raise ApiError("InvalidParameterValue.PersonIdAlreadyExist", f"The person {person_id} already exists.")
            similar = _similar_person(ctx, group_id, face.print, unique)
            if similar is not None:  # not created: the answer names the person it resembles
                return {"FaceId": "", "FaceRect": None, "SimilarPersonId": similar, "FaceModelVersion": version}
            ctx.state.persons[person_id] = Person(name, gender, [group_id], descriptions={group_id: descriptions},
                                                  creation_timestamp=now_ms())
            face_id = ctx.state.add_face(person_id, face.print)
            ctx.state.save()
        return {"FaceId": face_id, "FaceRect": face.rect(), "SimilarPersonId": "", "FaceModelVersion": version}

    return Prepared(apply, person=person_id)


def get_person_base_info(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    ctx.state.person(person_id)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            person = ctx.state.person(person_id)
            return {"PersonName": person.name, "Gender": person.gender, "FaceIds": list(person.faces)}

    return Prepared(apply)


def get_person_group_info(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    offset, limit = page(p, limits.PERSON_GROUP_INFO_MAX_LIMIT)
    ctx.state.person(person_id)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            person = ctx.state.person(person_id)
            infos = [{"GroupId": gid, "PersonExDescriptions": list(person.descriptions.get(gid, []))}
                     for gid in person.groups[offset : offset + limit]]
            return {"PersonGroupInfos": infos, "GroupNum": len(person.groups), "FaceModelVersion": ctx.state.model_version(person)}

    return Prepared(apply)


def get_person_list_num(ctx: Context, p: Params) -> Prepared:
    group_id = p.identifier("GroupId")
    ctx.state.group(group_id)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            members = [person for person in ctx.state.persons.values() if group_id in person.groups]
            return {"PersonNum": len(members), "FaceNum": sum(len(person.faces) for person in members)}

    return Prepared(apply)


def delete_person(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    with ctx.state.claiming(person_id):
        ctx.state.person(person_id)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            person = ctx.state.person(person_id)
            ctx.state.remove_faces(person_id, list(person.faces))
            del ctx.state.persons[person_id]
            ctx.state.save()
        return {}

    return Prepared(apply, person=person_id)
