"""Reading manifests from request bodies: JSON or YAML, one clear message when malformed."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import Request

from ketch.core.errors import InvalidSpec

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

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


def request_body(schema: dict[str, Any], *, yaml_too: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON (and YAML) body with ``schema``."""
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if yaml_too:
        content["application/yaml"] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


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
    """The body parsed as YAML (by Content-Type) or JSON; ``InvalidSpec`` when malformed."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidSpec("a request body is required", field="body")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in YAML_TYPES:
        return parse_yaml(raw)
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidSpec("malformed JSON: the body is not UTF-8 text", field="body") from None
    except json.JSONDecodeError as exc:
        raise InvalidSpec(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field="body"
        ) from None
    except (ValueError, RecursionError) as exc:  # a huge integer, nesting too deep
        raise InvalidSpec(f"malformed JSON: {exc}", field="body") from None


def parse_yaml(raw: bytes) -> Any:
    try:
        documents = [doc for doc in yaml.safe_load_all(raw) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise InvalidSpec(f"malformed YAML: {problem}{where}", field="body") from None
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
        raise InvalidSpec(f"{what} must be a JSON object, got {type(document).__name__}", field="body")
    return document
