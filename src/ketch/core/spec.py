"""Typed specs: the one base model every capability's spec models derive from, and
the one way a validation problem becomes an ``InvalidSpec`` naming its field.

Field paths read as in ``kubectl explain`` and Kubernetes' own errors:
``spec.replicaSpecs.Worker.template.spec.containers[0].image`` — map keys after a
dot, list indices in brackets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ketch.core.errors import InvalidSpec


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields are kept (Kubeflow manifests carry
    fields Ketch does not act on), and fields are filled by name or alias."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


#: The config of a spec model that lists every field Kubeflow's CRD has at its level:
#: it still parses (and keeps) fields it does not list, but its published schema says
#: there are no others, so the API server treats any other as an unknown field
#: (``fieldValidation``: refused when Strict, dropped with a warning otherwise), as
#: Kubernetes does with the CRD's schema.
COMPLETE = ConfigDict(
    extra="allow", populate_by_name=True, json_schema_extra={"additionalProperties": False}
)


M = TypeVar("M", bound=BaseModel)


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """``loc`` (a pydantic error location) as ``prefix.a[0].b``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def invalid_spec(exc: ValidationError, prefix: str = "", *, count: bool = True) -> InvalidSpec:
    """The first problem of ``exc`` as an ``InvalidSpec`` whose field is its path under
    ``prefix``; with ``count``, the message says how many more problems there are."""
    first = exc.errors()[0]
    message = str(first["msg"])
    more = exc.error_count() - 1
    if count and more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InvalidSpec(message, field=field_path(first["loc"], prefix) or None)


def parse(model: type[M], data: Any, prefix: str = "spec") -> M:
    """``data`` validated as ``model``; ``InvalidSpec`` names the field under ``prefix``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_spec(exc, prefix) from None


def model_schema(model: type[BaseModel]) -> Callable[[], dict[str, Any]]:
    """A zero-argument function returning the JSON schema of ``model``, field names by
    their wire aliases, as a kind's :attr:`~ketch.core.kinds.Kind.spec_schema`. The
    schema is made when the function is first called (then kept): only the OpenAPI
    documents need it."""

    @functools.cache
    def schema() -> dict[str, Any]:
        return model.model_json_schema(by_alias=True, mode="validation")

    return schema
