"""CreateFace (per-image RetCodes, FaceMatchThreshold, QualityControl, the 5-face limit, other writers) and DeleteFace."""

from __future__ import annotations

from typing import Any

from agent.devtools.emulator import limits
from agent.devtools.emulator.calls import ApiError, Params, Prepared
from agent.devtools.emulator.context import Context
from agent.devtools.emulator.images import SeenFace, examine, synthetic_print
from agent.devtools.emulator.uploads import controls, refuse_urls, threshold


def _verdict(ctx: Context, person_id: str, image: Any, quality: int) -> tuple[int, SeenFace | None, bool]:
    """(RetCode so far, the image's largest face, whether a mismatch is forced) for one image, at arrival."""
    seen = examine(image, ctx.checker)
    if seen.reason is not None:
        return seen.ret_code, None, False
    face = seen.largest
    if face.quality < quality or ctx.faults.take_person("low_quality_next", person_id):
        return limits.RET_QUALITY, None, False
    return limits.RET_OK, face, ctx.faults.take_person("mismatch_next", person_id)


def _other_writer_adds_a_face(ctx: Context, person_id: str) -> None:
    """Another device or the console adds a face of its own (an image no test sends) to the person."""
    person = ctx.state.persons[person_id]
    if len(person.faces) < limits.MAX_FACES_PER_PERSON:
        foreign = sum(1 for f in person.faces if (r := ctx.state.faces.get(f)) is not None and r.foreign)
        ctx.state.add_face(person_id, synthetic_print(f"{person_id}/{foreign}"), foreign=True)


def create_face(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    match_threshold = threshold(p, limits.DEFAULT_FACE_MATCH_THRESHOLD)
    quality = controls(p)
    images, urls = list(p.get("Images", [])), list(p.get("Urls", []))
    if max(len(images), len(urls)) > limits.MAX_IMAGES_PER_CALL:
        raise ApiError("InvalidParameterValue.UploadFaceNumExceed", f"At most {limits.MAX_IMAGES_PER_CALL} images per call.")
    if urls:
        refuse_urls(urls)
    if not images:
        raise ApiError("InvalidParameterValue.ImageEmpty", "Images or Urls is required.")
    with ctx.state.claiming(person_id):
        if len(ctx.state.person(person_id).faces) >= limits.MAX_FACES_PER_PERSON:
            raise ApiError("InvalidParameterValue.PersonFaceNumExceed", f"The person already has {limits.MAX_FACES_PER_PERSON} faces.")
        verdicts = [_verdict(ctx, person_id, image, quality) for image in images]

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            person = ctx.state.person(person_id)
            writer = ctx.faults.take_other_writer(person_id)
            if writer == "before":
                _other_writer_adds_a_face(ctx, person_id)
            # "Added only if it resembles the person's existing faces above FaceMatchThreshold": scored before adding.
            scores = [ctx.state.best_face(person_id, face.print) if face else (0.0, None) for _, face, _ in verdicts]
            ret_codes: list[int] = []
            added: list[tuple[int, str, SeenFace]] = []
            for index, ((arrival_code, face, mismatch), (score, compared)) in enumerate(zip(verdicts, scores)):
                code = arrival_code
                if face is not None and (mismatch or (compared is not None and score < match_threshold)):
                    code = limits.RET_MISMATCH
                elif face is not None and len(person.faces) >= limits.MAX_FACES_PER_PERSON:
                    code = limits.RET_SERVICE_ERROR  # the person filled up: a service error for this image
                ret_codes.append(code)
                if code == limits.RET_OK and face is not None:
                    added.append((index, ctx.state.add_face(person_id, face.print), face))
            if writer == "after":
                _other_writer_adds_a_face(ctx, person_id)
            ctx.state.save()
            version = ctx.state.model_version(person)
        return {"SucFaceNum": len(added), "SucFaceIds": [face_id for _, face_id, _ in added], "RetCode": ret_codes,
                "SucIndexes": [index for index, _, _ in added], "SucFaceRects": [face.rect() for _, _, face in added],
                "FaceModelVersion": version}

    return Prepared(apply, person=person_id)


def delete_face(ctx: Context, p: Params) -> Prepared:
    person_id = p.identifier("PersonId")
    face_ids = [str(f) for f in p.required("FaceIds")]
    with ctx.state.claiming(person_id):
        ctx.state.person(person_id)

    def apply() -> dict[str, Any]:
        with ctx.state.lock:
            person = ctx.state.person(person_id)
            wanted = [f for f in person.faces if f in face_ids]
            if wanted and len(wanted) >= len(person.faces):
                raise ApiError("InvalidParameterValue.DeleteFaceNumExceed", "A person keeps at least one face: its last face cannot be deleted.")
            ctx.state.remove_faces(person_id, wanted)
            ctx.state.save()
        return {"SucDeletedNum": len(wanted), "SucFaceIds": wanted}

    return Prepared(apply, person=person_id)
