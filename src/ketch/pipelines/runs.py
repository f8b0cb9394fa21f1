"""``PipelineRun`` (pipelines.ketch.dev/v1): stored pipeline runs seen as resources.

A run's ``metadata.name`` (and ``uid``) is its run id; its display name is the
annotation ``pipelines.ketch.dev/display-name``. ``status.state`` is the KFP run
state and ``status.conditions`` holds ``Running``, ``Succeeded``, ``Failed`` and
``Canceled``. Creating a PipelineRun submits a run: ``spec.pipelineSpec`` (the
compiled IR) and ``spec.parameters``, optionally ``enableCaching``, ``pipelineRoot``,
``experimentId``; ``metadata.name`` becomes the run's display name. Runs cannot be
changed once submitted; a finished run can be deleted.

:class:`PipelineRunSource` serves the kind to the resource API (a
:class:`~ketch.core.sources.Source` over the ``pipeline_runs`` and
``pipeline_tasks`` tables); :func:`validate` is its admission check.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import defer

from ketch.core.conditions import TERMINAL_RUN_STATES
from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound, ObjectNotFound
from ketch.core.kinds import Kind
from ketch.core.paging import decode_token, encode_token
from ketch.core.resource import Resource
from ketch.core.sources import (
    ApplyResult,
    Check,
    Manifest,
    MethodNotAllowed,
    NamespaceCount,
    Page,
)
from ketch.core.store.db import Database, retry_locked
from ketch.core.store.pods import delete_owned_in
from ketch.core.store.resources import Changes, ResourceStore, list_revision
from ketch.core.store.selectors import LabelSelector
from ketch.pipelines.manifests import journal_run, labels, to_manifest
from ketch.pipelines.owners import Reaper
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow

if TYPE_CHECKING:
    from ketch.pipelines.service import RunService

log = logging.getLogger(__name__)

_SPEC_KEYS = {
    "pipelineSpec",
    "parameters",
    "enableCaching",
    "pipelineRoot",
    "experimentId",
    "pipelineId",
    "pipelineVersionId",
    "displayName",
}
# What the server adds to the spec it serves (to_manifest): accepted when a client
# sends a run back as it read it, and ignored.
_SERVED_KEYS = {"pipelineName", "recurringRunId"}
_TEXT_KEYS = ("pipelineRoot", "experimentId", "pipelineId", "pipelineVersionId", "displayName")


class RunServiceUnavailable(KetchError):
    """The server serves stored runs but executes none (it runs no run service)."""

    http_status = 503


# -- the spec ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What a PipelineRun asks for, checked."""

    pipeline_spec: dict[str, Any]
    parameters: dict[str, Any]
    enable_caching: bool | None
    pipeline_root: str | None
    experiment_id: str | None
    pipeline_id: str | None
    pipeline_version_id: str | None
    display_name: str | None

    @classmethod
    def of(cls, resource: Resource) -> RunSpec:
        """The spec of ``resource``; ``InvalidSpec`` names the field that is wrong."""
        spec = resource.spec
        unknown = sorted(set(spec) - _SPEC_KEYS - _SERVED_KEYS)
        if unknown:
            raise InvalidSpec(
                f"unknown field; a PipelineRun spec has {', '.join(sorted(_SPEC_KEYS))}",
                field=f"spec.{unknown[0]}",
            )
        ir = spec.get("pipelineSpec")
        if not isinstance(ir, dict) or not ir:
            raise InvalidSpec(
                "the compiled pipeline (IR) is required",
                field="spec.pipelineSpec",
                hint="compile it with kfp's compiler and put the YAML document here",
            )
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidSpec(
                "must be a mapping of parameter names to values", field="spec.parameters"
            )
        caching = spec.get("enableCaching")
        if caching is not None and not isinstance(caching, bool):
            raise InvalidSpec("must be true or false", field="spec.enableCaching")
        for key in _TEXT_KEYS:
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise InvalidSpec("must be a string", field=f"spec.{key}")
        return cls(
            pipeline_spec=ir,
            parameters=parameters,
            enable_caching=caching,
            pipeline_root=spec.get("pipelineRoot"),
            experiment_id=spec.get("experimentId"),
            pipeline_id=spec.get("pipelineId"),
            pipeline_version_id=spec.get("pipelineVersionId"),
            display_name=spec.get("displayName"),
        )


def validate(resource: Resource) -> None:
    """The PipelineRun validator: a bad spec is refused before a run is stored."""
    RunSpec.of(resource)


def default_name(manifest: Manifest) -> str:
    """An unnamed run is named after its pipeline (``pipelineInfo.name``)."""
    spec = manifest.get("spec")
    ir = spec.get("pipelineSpec") if isinstance(spec, dict) else None
    info = ir.get("pipelineInfo") if isinstance(ir, dict) else None
    name = info.get("name") if isinstance(info, dict) else None
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", str(name or "").lower()).strip("-.")
    return cleaned[:200].strip("-.") or "pipeline-run"


def _offset(token: str) -> int:
    value = decode_token(token, field="continue", keys=("offset",))["offset"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidSpec("the continue token is not one this server issued", field="continue")
    return value


# -- the source -----------------------------------------------------------------------


class PipelineRunSource:
    """Serves ``PipelineRun`` from the ``pipeline_runs`` and ``pipeline_tasks`` tables.

    ``runs`` gives the run service that creating a PipelineRun submits to (``None``
    while there is none: runs are only read); ``reaper`` ends the runs of dead
    ``ketch run`` processes before a read (one is made when none is given).
    """

    def __init__(
        self,
        database: Database,
        runs: Callable[[], RunService | None] = lambda: None,
        reaper: Reaper | None = None,
    ) -> None:
        self.database = database
        self.runs = runs
        self.reaper = reaper or Reaper(database)
        self._journal = ResourceStore(database, migrate=False)

    # -- reads -----------------------------------------------------------------

    def row(self, namespace: str, name: str) -> PipelineRunRow:
        with self.database.session(readonly=True) as session:
            row = session.get(PipelineRunRow, name)
            if row is None or row.namespace != namespace:
                raise self._not_found(namespace, name)
            return row

    @staticmethod
    def _not_found(namespace: str, name: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"PipelineRun {name!r} not found in namespace {namespace!r}",
            kind="PipelineRun",
            namespace=namespace,
            name=name,
            hint=f"list runs with: ketch get runs -n {namespace}",
        )

    def tasks(self, run_id: str) -> list[PipelineTaskRow]:
        with self.database.session(readonly=True) as session:
            query = (
                select(PipelineTaskRow)
                .where(PipelineTaskRow.run_id == run_id)
                .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
            )
            return list(session.scalars(query).all())

    def task(self, run_id: str, path: str) -> PipelineTaskRow | None:
        return next((t for t in self.tasks(run_id) if t.path == path), None)

    def state(self, run_id: str) -> str | None:
        with self.database.session(readonly=True) as session:
            return session.scalar(select(PipelineRunRow.state).where(PipelineRunRow.id == run_id))

    def _reap(self) -> None:
        """Runs of a ``ketch run`` that died end FAILED before anyone reads them."""
        try:
            self.reaper.reap()
        except Exception:  # a read must still answer
            log.debug("could not check the owners of in-flight runs", exc_info=True)

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        self._reap()
        row = self.row(namespace, name)
        return to_manifest(row, self.tasks(row.id), full=True)

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        if limit is not None and limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        selector = LabelSelector.parse(label_selector)
        offset = _offset(continue_token) if continue_token else 0
        self._reap()
        query = select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id)
        if namespace is not None:
            query = query.where(PipelineRunRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            revision = list_revision(session, None)  # in the same snapshot as the runs
            rows = list(session.scalars(query.options(defer(PipelineRunRow.pipeline_spec))).all())
        matching = [r for r in rows if selector.matches(labels(r))]
        page = matching[offset : offset + limit] if limit is not None else matching[offset:]
        items = [to_manifest(r) for r in page]
        more = limit is not None and offset + limit < len(matching)
        token = encode_token({"offset": offset + len(page)}) if more else None
        return Page(items, token, str(revision))

    def namespace_counts(self, kind: Kind) -> tuple[dict[str, NamespaceCount], str | None]:
        """The runs of each namespace, counted by the database (the namespace list
        asks on every call), at the revision read in the same snapshot."""
        query = select(
            PipelineRunRow.namespace, func.count(), func.min(PipelineRunRow.created_at)
        ).group_by(PipelineRunRow.namespace)
        with self.database.session(readonly=True) as session:
            revision = list_revision(session, None)
            rows = session.execute(query).all()
        counts: dict[str, NamespaceCount] = {
            namespace: (int(number), oldest) for namespace, number, oldest in rows
        }
        return counts, str(revision)

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        query = select(PipelineRunRow).options(defer(PipelineRunRow.pipeline_spec))
        if namespace is not None:
            query = query.where(PipelineRunRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            rows = list(session.scalars(query).all())
        return {r.id: str(r.resource_version) for r in rows if selector.matches(labels(r))}

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = builtins.list(uids)
        if not wanted:
            return {}
        with self.database.session(readonly=True) as session:
            query = select(PipelineRunRow).where(PipelineRunRow.id.in_(wanted))
            found = builtins.list(
                session.scalars(query.options(defer(PipelineRunRow.pipeline_spec)))
            )
        return {r.id: to_manifest(r) for r in found}

    # -- the change journal (watches) --------------------------------------------

    def revision(self) -> int:
        """The store's revision (a list's or a watch's starting ``resourceVersion``)."""
        return self._journal.revision()

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        """The journaled changes to runs (in ``namespace``, ``None``: all) after revision
        ``after``; ``Expired`` when the journal no longer goes back that far."""
        return self._journal.changes(after, kind=kind.kind, namespace=namespace)

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        """Run ``uid`` as it was before revision ``before``, if the journal has it."""
        return self._journal.previous(kind.kind, uid, before)

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        return default_name(manifest)

    # -- writes ----------------------------------------------------------------

    def _service(self) -> RunService:
        service = self.runs()
        if service is None:
            raise RunServiceUnavailable(
                "this server cannot run pipelines: the run service is not available",
                hint="start the server with 'ketch up'",
            )
        return service

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        spec = RunSpec.of(resource)
        run_id = self._service().submit(
            spec.pipeline_spec,
            parameters=spec.parameters,
            display_name=spec.display_name or resource.metadata.name,
            namespace=resource.metadata.namespace,
            experiment_id=spec.experiment_id,
            pipeline_id=spec.pipeline_id,
            pipeline_version_id=spec.pipeline_version_id,
            enable_caching=spec.enable_caching,
            pipeline_root=spec.pipeline_root,
        )
        return self.get(kind, resource.metadata.namespace, str(run_id))

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        meta = resource.metadata
        try:
            current = self.get(kind, meta.namespace, meta.name)
        except NotFound:
            return self.create(kind, resource), "created"
        wanted = {k: v for k, v in resource.spec.items() if k in ("parameters", "pipelineSpec")}
        have = {k: current["spec"].get(k) for k in wanted}
        if wanted != have:
            raise Conflict(
                f"PipelineRun {meta.name!r} exists and a run cannot be changed",
                hint="submit a new run instead (leave out metadata.name or pick a new one)",
            )
        return current, "unchanged"

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        raise MethodNotAllowed("a PipelineRun cannot be patched; submit a new run instead")

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        raise MethodNotAllowed("a PipelineRun's status is written by the pipeline engine only")

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        row = self.row(namespace, name)
        if row.state not in TERMINAL_RUN_STATES:
            raise Conflict(
                f"PipelineRun {name!r} is {row.state}; only a finished run can be deleted",
                hint=f"cancel it first: ketch runs cancel {name}",
            )
        manifest = to_manifest(row, self.tasks(row.id))

        def remove() -> Manifest:
            with self.database.session() as session:
                gone = journal_run(session, row.id, "DELETED")
                if gone is None:  # deleted meanwhile
                    raise self._not_found(namespace, name)
                manifest["metadata"]["resourceVersion"] = str(gone.resource_version)
                session.execute(delete(PipelineTaskRow).where(PipelineTaskRow.run_id == row.id))
                session.execute(delete(PipelineRunRow).where(PipelineRunRow.id == row.id))
                delete_owned_in(session, row.id)  # its tasks' pods
            return manifest

        return retry_locked(remove)
