"""Reading manifests from request bodies: JSON or YAML, one clear message when malformed."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ketch.core.documents import load_json, load_yaml_all
from ketch.core.errors import InvalidSpec

YAML_TYPES = (
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
    "application/apply-patch+yaml",
)
#: What kubectl 1.32 and later send the core kinds it creates as (see
#: :mod:`ketch.server.protobuf`).
PROTOBUF = "application/vnd.kubernetes.protobuf"

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"type": "string", "example": "kubeflow.org/v1"},
        "kind": {"type": "string", "example": "PyTorchJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "example": "mnist"},
                "generateName": {"type": "string"},
                "namespace": {"type": "string", "example": "default"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "resourceVersion": {"type": "string"},
            },
        },
        "spec": {"type": "object"},
        "status": {"type": "object"},
    },
}

PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "metadata": {
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "annotations": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "null"]},
                },
                "resourceVersion": {"type": "string"},
            },
        },
        "spec": {"type": "object"},
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}}},
        "status": {"type": "object"},
    },
}


def patch_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/merge-patch+json": {"schema": PATCH_SCHEMA},
                "application/json": {"schema": PATCH_SCHEMA},
            },
        }
    }


async def read_document(request: Request) -> Any:
    """The body parsed as YAML (by Content-Type), Kubernetes' protobuf or JSON;
    ``InvalidSpec`` when malformed."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidSpec("a request body is required", field="body")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in YAML_TYPES:
        return parse_yaml(raw)
    if content_type == PROTOBUF:
        from ketch.server import protobuf

        return protobuf.decode(raw)
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    return load_json(raw, field="body")


def parse_yaml(raw: bytes) -> Any:
    documents = load_yaml_all(raw, field="body")
    if not documents:
        raise InvalidSpec("a request body is required", field="body")
    if len(documents) > 1:
        raise InvalidSpec(
            f"the body holds {len(documents)} YAML documents; send one per request",
            field="body",
        )
    return documents[0]


def require_mapping(document: Any, what: str = "a manifest") -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidSpec(
            f"{what} must be a JSON object, got {type(document).__name__}", field="body"
        )
    return document
