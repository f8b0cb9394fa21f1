"""What every HTTP route of Ketch documents the same way, for the server and for the
capabilities' own routes: the error body and the OpenAPI shape of a JSON body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """What every failed request answers."""

    error: str
    message: str
    code: int = Field(description="gRPC status code (3 invalid argument, 5 not found, ...)")
    details: list[Any] = Field(default_factory=list)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Bad request"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
    )
}


def request_body(schema: dict[str, Any], *, yaml_too: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON (and YAML) body with ``schema``."""
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if yaml_too:
        content["application/yaml"] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}
