"""The registry as one app's service: its store, and lineage — the link from each
registered artifact to what produced its URI.

When an artifact is written with a URI, every :class:`~ketch.core.provenance.Provenance`
the app's capabilities offer is asked what made it (a pipeline run's task, with the
artifacts it read and its parameters); the answer is stored as an ML Metadata
``OUTPUT`` event of that producer (:class:`~ketch.registry.tables.LineageRow`), and its
inputs as ``INPUT`` events. A producer that had not finished when the model was
registered is looked up again when the lineage is read.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketch.core.provenance import Origin, Provenance
from ketch.core.services import ServiceContext
from ketch.registry.entities import MODEL_VERSION
from ketch.registry.store import Registry, now_ms, to_json
from ketch.registry.tables import EntityRow, LineageRow


class RegistryService:
    """The registry of one app (see the module); nothing runs in the background."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.registry = Registry(context.database, self._link)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def _providers(self) -> list[Provenance]:
        return [s for s in self.context.services if s is not self and isinstance(s, Provenance)]

    def produced(self, uri: str) -> Origin | None:
        """What produced ``uri``, as the first capability that knows says."""
        for provider in self._providers():
            found = provider.origin(uri)
            if found is not None:
                return found
        return None

    def _link(self, s: Session, row: EntityRow) -> None:
        """Link the artifact ``row`` to what produced its URI (replacing older links)."""
        found = self.produced(row.uri)
        for old in s.execute(select(LineageRow).where(LineageRow.entity_id == row.id)).scalars():
            s.delete(old)
        if found is not None:
            _store(s, row.id, found)

    def lineage(self, namespace: str, version_id: int) -> dict[str, Any]:
        """The version, its artifacts and, for each, what produced it and what that
        read: ``{modelVersion, artifacts: [{artifact, producedBy, inputs}]}``."""
        registry = self.registry
        version = registry.get(namespace, MODEL_VERSION, version_id)
        out: list[dict[str, Any]] = []
        with registry.database.session() as s:
            artifacts = s.execute(
                select(EntityRow).where(
                    EntityRow.namespace == namespace,
                    EntityRow.kind == "artifact",
                    EntityRow.parent_id == version_id,
                )
            ).scalars()
            for artifact in list(artifacts):
                links = list(
                    s.execute(
                        select(LineageRow).where(LineageRow.entity_id == artifact.id)
                    ).scalars()
                )
                if not links and artifact.uri:
                    found = self.produced(artifact.uri)
                    if found is not None:
                        links = _store(s, artifact.id, found)
                out.append(_describe(to_json(artifact), links))
        return {"modelVersion": version, "artifacts": out}


def _store(s: Session, entity_id: int, origin: Origin) -> list[LineageRow]:
    stamp = now_ms()
    made = [
        LineageRow(
            entity_id=entity_id,
            type="OUTPUT",
            source_kind=origin.kind,
            source_namespace=origin.namespace,
            source_name=origin.name,
            task=origin.task,
            created=stamp,
            detail=json.dumps(origin.as_dict(), separators=(",", ":"), default=str),
        )
    ]
    for key, artifacts in origin.inputs.items():
        for artifact in artifacts if isinstance(artifacts, list) else [artifacts]:
            made.append(
                LineageRow(
                    entity_id=entity_id,
                    type="INPUT",
                    source_kind="artifact",
                    source_namespace=origin.namespace,
                    source_name=str(artifact.get("uri", ""))[:255],
                    task=key[:255],
                    created=stamp,
                    detail=json.dumps(artifact, separators=(",", ":"), default=str),
                )
            )
    s.add_all(made)
    s.flush()
    return made


def _describe(artifact: dict[str, Any], links: list[LineageRow]) -> dict[str, Any]:
    produced = next((json.loads(r.detail) for r in links if r.type == "OUTPUT"), None)
    inputs = [
        {"name": r.task, "uri": r.source_name, **json.loads(r.detail)}
        for r in links
        if r.type == "INPUT"
    ]
    return {"artifact": artifact, "producedBy": produced, "inputs": inputs}
