"""The Model Registry's entities as its REST API writes them: which fields each kind
has, which it requires, the states it takes, and how a request's JSON becomes what
the store keeps (and back).

Every entity has ``id``, ``name``, ``externalId``, ``description``,
``customProperties``, ``createTimeSinceEpoch`` and ``lastUpdateTimeSinceEpoch``
(read-only strings of milliseconds); ids are strings on the wire. Custom properties
are typed by ``metadataType`` (``MetadataStringValue``, ``MetadataIntValue`` whose
``int_value`` is a string, ``MetadataDoubleValue``, ``MetadataBoolValue``,
``MetadataStructValue``, ``MetadataProtoValue``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ketch.core.errors import InvalidSpec

COMMON = ("name", "externalId", "description", "customProperties")
READ_ONLY = frozenset({"id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch"})
LIVE_ARCHIVED = ("LIVE", "ARCHIVED")
ARTIFACT_STATES = (
    "UNKNOWN",
    "PENDING",
    "LIVE",
    "MARKED_FOR_DELETION",
    "DELETED",
    "ABANDONED",
    "REFERENCE",
)
EXECUTION_STATES = ("UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
DESIRED_STATES = ("DEPLOYED", "UNDEPLOYED")

#: custom property types: ``metadataType`` → (its value field, the store's type)
METADATA_TYPES: dict[str, tuple[str, str]] = {
    "MetadataStringValue": ("string_value", "string"),
    "MetadataIntValue": ("int_value", "int"),
    "MetadataDoubleValue": ("double_value", "double"),
    "MetadataBoolValue": ("bool_value", "bool"),
    "MetadataStructValue": ("struct_value", "struct"),
    "MetadataProtoValue": ("proto_value", "proto"),
}
MAX_PROPERTIES = 256
MAX_TEXT = 65536
MAX_NAME = 255

MODEL_ARTIFACT = "model-artifact"
#: each artifactType's fields beside the common ones
ARTIFACT_FIELDS: dict[str, tuple[str, ...]] = {
    MODEL_ARTIFACT: (
        "modelFormatName",
        "modelFormatVersion",
        "storageKey",
        "storagePath",
        "serviceAccountName",
        "modelSourceKind",
        "modelSourceClass",
        "modelSourceGroup",
        "modelSourceId",
        "modelSourceName",
        "experimentId",
        "experimentRunId",
    ),
    "doc-artifact": ("experimentId", "experimentRunId"),
    "dataset-artifact": (
        "digest",
        "sourceType",
        "source",
        "schema",
        "profile",
        "experimentId",
        "experimentRunId",
    ),
    "metric": ("value", "timestamp", "step", "experimentId", "experimentRunId"),
    "parameter": ("value", "parameterType", "experimentId", "experimentRunId"),
}
#: fields that are numbers, not strings
_NUMBERS = frozenset({"value", "step"})
_LISTS = frozenset({"language", "tasks"})
_PARAMETER_TYPES = ("string", "number", "boolean", "object")


@dataclass(frozen=True)
class Kind:
    """One kind of entity: ``kind`` as the store keeps it, its collection and singular
    path segments, its fields, the field naming its parent, and its states."""

    kind: str
    collection: str
    singular: str
    what: str
    fields: tuple[str, ...] = ()
    #: the body field naming the parent (kept as the row's ``parent_id``)
    parent: str | None = None
    parent_required: bool = False
    name_required: bool = True
    #: the field kept as the row's ``state`` and the values it takes
    state_field: str | None = "state"
    states: tuple[str, ...] = LIVE_ARCHIVED
    default_state: str | None = "LIVE"


REGISTERED_MODEL = Kind(
    "registered_model",
    "registered_models",
    "registered_model",
    "registered model",
    (
        "owner",
        "readme",
        "maturity",
        "language",
        "tasks",
        "provider",
        "logo",
        "license",
        "licenseLink",
        "libraryName",
    ),
)
MODEL_VERSION = Kind(
    "model_version",
    "model_versions",
    "model_version",
    "model version",
    ("author",),
    parent="registeredModelId",
    parent_required=True,
)
ARTIFACT = Kind(
    "artifact",
    "artifacts",
    "artifact",
    "artifact",
    parent=None,
    name_required=False,
    states=ARTIFACT_STATES,
    default_state="UNKNOWN",
)
SERVING_ENVIRONMENT = Kind(
    "serving_environment",
    "serving_environments",
    "serving_environment",
    "serving environment",
    state_field=None,
    states=(),
    default_state=None,
)
INFERENCE_SERVICE = Kind(
    "inference_service",
    "inference_services",
    "inference_service",
    "inference service",
    ("registeredModelId", "modelVersionId", "runtime"),
    parent="servingEnvironmentId",
    parent_required=True,
    name_required=False,
    state_field="desiredState",
    states=DESIRED_STATES,
    default_state="DEPLOYED",
)
SERVE_MODEL = Kind(
    "serve_model",
    "serves",
    "serve_model",
    "serve model",
    ("modelVersionId",),
    parent="inferenceServiceId",
    name_required=False,
    state_field="lastKnownState",
    states=EXECUTION_STATES,
    default_state="UNKNOWN",
)
EXPERIMENT = Kind("experiment", "experiments", "experiment", "experiment", ("owner",))
EXPERIMENT_RUN = Kind(
    "experiment_run",
    "experiment_runs",
    "experiment_run",
    "experiment run",
    ("owner", "status", "startTimeSinceEpoch", "endTimeSinceEpoch"),
    parent="experimentId",
    parent_required=True,
)
KINDS = (
    REGISTERED_MODEL,
    MODEL_VERSION,
    ARTIFACT,
    SERVING_ENVIRONMENT,
    INFERENCE_SERVICE,
    SERVE_MODEL,
    EXPERIMENT,
    EXPERIMENT_RUN,
)
BY_KIND = {k.kind: k for k in KINDS}


@dataclass
class Fields:
    """A request's body, checked: what goes into the row's columns and its body."""

    name: str | None
    external_id: str | None
    state: str | None
    parent_id: int | None
    subtype: str
    uri: str | None
    body: dict[str, Any]
    #: custom properties, or ``None`` when the request does not set them
    properties: dict[str, dict[str, Any]] | None


def entity_id(value: Any, field: str) -> int:
    """An id as the API sends it (a string of digits) as the store keeps it."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    if not text.isdigit() or len(text) > 18:
        raise InvalidSpec(f"{field} must be an id (a string of digits), not {value!r}", field=field)
    return int(text)


def _text(body: dict[str, Any], name: str, limit: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise InvalidSpec(f"{name} is longer than {limit} characters", field=name)
    return value


def check_properties(value: Any, field: str = "customProperties") -> dict[str, dict[str, Any]]:
    """``customProperties`` checked: each value an object whose ``metadataType`` is one
    of the six and whose value field has that type."""
    if not isinstance(value, dict):
        raise InvalidSpec(f"{field} must be an object of named values", field=field)
    if len(value) > MAX_PROPERTIES:
        raise InvalidSpec(f"{field} has more than {MAX_PROPERTIES} properties", field=field)
    checked: dict[str, dict[str, Any]] = {}
    for name, item in value.items():
        at = f"{field}.{name}"
        if not name or len(name) > MAX_NAME:
            raise InvalidSpec(
                f"a custom property name must be 1 to {MAX_NAME} characters", field=at
            )
        if not isinstance(item, dict):
            raise InvalidSpec("must be an object with a metadataType", field=at)
        kind = item.get("metadataType")
        if kind not in METADATA_TYPES:
            raise InvalidSpec(
                f"metadataType must be one of {', '.join(METADATA_TYPES)}, not {kind!r}",
                field=f"{at}.metadataType",
            )
        slot, _type = METADATA_TYPES[kind]
        if slot not in item:
            raise InvalidSpec(f"a {kind} needs {slot}", field=f"{at}.{slot}")
        checked[name] = {"metadataType": kind, slot: _typed(kind, item[slot], f"{at}.{slot}")}
        if kind == "MetadataProtoValue":
            proto_type = item.get("type")
            if not isinstance(proto_type, str):
                raise InvalidSpec("a MetadataProtoValue needs its type", field=f"{at}.type")
            checked[name]["type"] = proto_type
    return checked


def _typed(kind: str, value: Any, at: str) -> Any:
    if kind == "MetadataIntValue":
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        try:
            number = int(text)
        except ValueError:
            raise InvalidSpec(
                f"must be an integer (as a string), not {value!r}", field=at
            ) from None
        if abs(number) >= 2**63:
            raise InvalidSpec("is out of the 64-bit range", field=at)
        return str(number)
    if kind == "MetadataDoubleValue":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidSpec(f"must be a number, not {value!r}", field=at)
        if not math.isfinite(float(value)):
            raise InvalidSpec("must be a finite number", field=at)
        return float(value)
    if kind == "MetadataBoolValue":
        if not isinstance(value, bool):
            raise InvalidSpec(f"must be true or false, not {value!r}", field=at)
        return value
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidSpec(f"must be a string of at most {MAX_TEXT} characters", field=at)
    return value


def property_rows(properties: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The typed rows of ``properties`` (what ``filterQuery`` compares)."""
    rows = []
    for name, item in properties.items():
        slot, kind = METADATA_TYPES[item["metadataType"]]
        row: dict[str, Any] = {
            "name": name,
            "type": kind,
            "string_value": None,
            "int_value": None,
            "double_value": None,
            "bool_value": None,
        }
        value = item[slot]
        if kind == "int":
            row["int_value"] = int(value)
        elif kind == "double":
            row["double_value"] = value
        elif kind == "bool":
            row["bool_value"] = value
        else:
            row["string_value"] = value
        rows.append(row)
    return rows


def fields_of(kind: Kind, body: Any, *, create: bool, subtype: str = "") -> Fields:
    """A create or update body of ``kind`` checked (``InvalidSpec`` naming the field):
    unknown fields are refused, read-only ones ignored."""
    if not isinstance(body, dict):
        raise InvalidSpec(f"the body must be a JSON object (a {kind.what})", field="body")
    if kind is ARTIFACT:
        given = body.get("artifactType", subtype or None)
        if given not in ARTIFACT_FIELDS:
            raise InvalidSpec(
                f"artifactType must be one of {', '.join(ARTIFACT_FIELDS)}, not {given!r}",
                field="artifactType",
            )
        if subtype and given != subtype:
            raise InvalidSpec(f"artifactType must be {subtype} here", field="artifactType")
        subtype = str(given)
        own: tuple[str, ...] = (*ARTIFACT_FIELDS[subtype], "uri", "state", "artifactType")
    else:
        own = kind.fields
    allowed = {*COMMON, *own, *READ_ONLY}
    if kind.parent:
        allowed.add(kind.parent)
    if kind.state_field:
        allowed.add(kind.state_field)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidSpec(
            f"a {kind.what} has no field {unknown[0]!r} (its fields: "
            f"{', '.join(sorted(allowed - READ_ONLY))})",
            field=unknown[0],
        )
    name = _text(body, "name", MAX_NAME)
    if create and kind.name_required and not name:
        raise InvalidSpec(f"a {kind.what} needs a name", field="name")
    state = _text(body, kind.state_field, 64) if kind.state_field else None
    if state is not None and state not in kind.states:
        raise InvalidSpec(
            f"{kind.state_field} must be one of {', '.join(kind.states)}, not {state!r}",
            field=str(kind.state_field),
        )
    if state is None and create:
        state = kind.default_state
    parent_id = None
    if kind.parent and body.get(kind.parent) is not None:
        parent_id = entity_id(body[kind.parent], kind.parent)
    kept: dict[str, Any] = {}
    for field in (*own, "description"):
        if field in ("uri", "state", "artifactType") or field not in body:
            continue
        value = body[field]
        if value is None:
            kept[field] = None
        elif field in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidSpec(f"{field} must be a list of strings", field=field)
            kept[field] = value
        elif field in _NUMBERS and subtype in ("metric",):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise InvalidSpec(f"{field} must be a number", field=field)
            kept[field] = value
        elif subtype == "parameter" and field == "value":
            kept[field] = value if isinstance(value, str | int | float | bool) else str(value)
        elif field == "parameterType" and value not in _PARAMETER_TYPES:
            raise InvalidSpec(f"parameterType must be one of {', '.join(_PARAMETER_TYPES)}")
        else:
            kept[field] = _text(body, field)
    for field in ("registeredModelId", "modelVersionId"):
        if kept.get(field) is not None:
            kept[field] = str(entity_id(kept[field], field))
    properties = None
    if body.get("customProperties") is not None:
        properties = check_properties(body["customProperties"])
    return Fields(
        name=name,
        external_id=_text(body, "externalId", MAX_NAME),
        state=state,
        parent_id=parent_id,
        subtype=subtype,
        uri=_text(body, "uri") if kind is ARTIFACT else None,
        body=kept,
        properties=properties,
    )
