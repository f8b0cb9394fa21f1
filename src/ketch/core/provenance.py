"""Where an artifact came from: the seam through which a capability that produces
artifacts (pipelines: a run's task outputs) tells another that records them (the model
registry) what made a URI, without either importing the other.

A producing capability offers a :class:`Provenance` among its services; the consumer
finds every one in the app's :class:`~ketch.core.services.Services` and asks each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Origin:
    """What produced an artifact: the workload (``kind``/``namespace``/``name``: a
    PipelineRun and its run id, a training job, a Katib trial), the task in it, the
    artifacts that task read (``inputs``: ``{input name: [{"name", "type", "uri"}]}``)
    and the parameters it ran with."""

    kind: str
    namespace: str
    name: str
    task: str = ""
    display_name: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: anything else worth showing (the run's pipeline, state, times)
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "task": self.task,
            "displayName": self.display_name,
            "inputs": dict(self.inputs),
            "parameters": dict(self.parameters),
            "detail": dict(self.detail),
        }


@runtime_checkable
class Provenance(Protocol):
    def origin(self, uri: str) -> Origin | None:
        """What produced the artifact at ``uri`` (``None``: nothing this capability
        knows of, or not finished yet)."""
        ...


def uri_forms(uri: str) -> list[str]:
    """``uri`` as a local path and as a ``file://`` URI, the forms one artifact is
    written in by the tasks that make it and the clients that register it."""
    forms = [uri]
    if uri.startswith("file://"):
        forms.append(uri[len("file://") :])
    elif uri.startswith("/"):
        forms.append("file://" + uri)
    trimmed = [u.rstrip("/") for u in forms if u.endswith("/") and len(u) > 1]
    return [*forms, *trimmed]
