"""One API call as the rules see it: typed parameters, the error envelope, and the change a call will apply.

Every action is split in two: `prepare` validates (its errors are answered at once) and returns a `Prepared`
whose `apply` makes the change and builds the answer. The server decides when `apply` runs (at once, or later
for the `apply_after_next` fault) and what the client hears afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.devtools.emulator import limits

# Each action's request fields and their JSON types, from the SDK's `<Action>Request` models (both versions).
FIELDS: dict[str, dict[str, str]] = {
    "CreateFace": {"PersonId": "str", "Images": "[str]", "Urls": "[str]", "FaceMatchThreshold": "float",
                   "QualityControl": "int", "NeedRotateDetection": "int"},
    "CreatePerson": {"GroupId": "str", "PersonName": "str", "PersonId": "str", "Gender": "int", "PersonExDescriptionInfos": "[obj]",
                     "Image": "str", "Url": "str", "UniquePersonControl": "int", "QualityControl": "int", "NeedRotateDetection": "int"},
    "CreateGroup": {"GroupName": "str", "GroupId": "str", "GroupExDescriptions": "[str]", "Tag": "str", "FaceModelVersion": "str"},
    "GetGroupList": {"Offset": "int", "Limit": "int"},
    "GetPersonBaseInfo": {"PersonId": "str"},
    "GetPersonListNum": {"GroupId": "str"},
    "GetPersonGroupInfo": {"PersonId": "str", "Offset": "int", "Limit": "int"},
    "DeleteFace": {"PersonId": "str", "FaceIds": "[str]"},
    "DetectLiveFaceAccurate": {"Image": "str", "Url": "str", "FaceModelVersion": "str"},  # 2020-03-03 only
    "DeletePerson": {"PersonId": "str"},
    "SearchFaces": {"GroupIds": "[str]", "Image": "str", "Url": "str", "MaxFaceNum": "int", "MinFaceSize": "int", "MaxPersonNum": "int",
                    "NeedPersonInfo": "int", "QualityControl": "int", "FaceMatchThreshold": "float", "NeedRotateDetection": "int"},
}
JSON_TYPES = {"str": "String", "int": "Integer", "float": "Float", "[str]": "Array of String", "[obj]": "Array of Object"}


class ApiError(Exception):
    """An answer in the error envelope: `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _has_type(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    item = {"[str]": str, "[obj]": dict}[kind]
    return isinstance(value, list) and all(isinstance(v, item) for v in value)


class Params:
    """The JSON body of one action: unknown fields and wrong types are refused as API 3.0 does."""

    def __init__(self, action: str, body: dict[str, Any]) -> None:
        fields = FIELDS[action]
        for name, value in body.items():
            if name not in fields:
                raise ApiError("UnknownParameter", f"The parameter `{name}` is not recognized.")
            if value is not None and not _has_type(value, fields[name]):
                raise ApiError("InvalidParameter", f"The value type of parameter `{name}` is not valid, it should be {JSON_TYPES[fields[name]]}.")
        self.action = action
        self.body = {k: v for k, v in body.items() if v is not None}

    def has(self, name: str) -> bool:
        return name in self.body

    def get(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, default)

    def required(self, name: str) -> Any:
        """A field that must be present and not empty (MissingParameter.ErrorParameterEmpty otherwise)."""
        value = self.body.get(name)
        if value in (None, "", []):
            raise ApiError("MissingParameter.ErrorParameterEmpty", f"The parameter `{name}` is required.")
        return value

    def identifier(self, name: str) -> str:
        """PersonId or GroupId: required, at most 64 bytes (`<name>TooLong`), letters, digits and -%@#&_ (`<name>Illegal`)."""
        value = str(self.required(name))
        if len(value.encode("utf-8")) > limits.ID_MAX_BYTES:
            raise ApiError(f"InvalidParameterValue.{name}TooLong", f"{name} is longer than {limits.ID_MAX_BYTES} bytes.")
        if not limits.ID_RE.match(value):
            raise ApiError(f"InvalidParameterValue.{name}Illegal", f"{name} may hold only letters, digits and -%@#&_.")
        return value

    def name(self, name: str) -> str:
        """PersonName or GroupName: required, 1-60 characters (`<name>TooLong`)."""
        value = str(self.required(name))
        if len(value) > limits.NAME_MAX_CHARS:
            raise ApiError(f"InvalidParameterValue.{name}TooLong", f"{name} is longer than {limits.NAME_MAX_CHARS} characters.")
        return value

    def int_in(self, name: str, allowed: range, default: int, code: str = "InvalidParameterValue") -> int:
        """An integer field within `allowed`, else `code` (e.g. `InvalidParameterValue.QualityControlIllegal`)."""
        value = int(self.body.get(name, default))
        if value not in allowed:
            raise ApiError(code, f"{name} must be between {allowed.start} and {allowed.stop - 1}, not {value}.")
        return value

    def float_in(self, name: str, low: float, high: float, default: float, code: str) -> float:
        value = float(self.body.get(name, default))
        if not low <= value <= high:
            raise ApiError(code, f"{name} must be between {low:g} and {high:g}, not {value:g}.")
        return value


@dataclass
class Prepared:
    """A validated call: `apply()` makes the change (or reads) and returns the Response fields.

    `person` is the person this call keeps busy until it has been applied (FailedOperation.ConflictOperation for
    any other change on that person meanwhile).
    """

    apply: Callable[[], dict[str, Any]]
    person: str | None = None
