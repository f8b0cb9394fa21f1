"""The KFP catalog in the store: pipelines and versions, experiments, recurring
runs, and the KFP views of runs (pages, task details, archive, delete).

Runs themselves are created and executed by :class:`ketch.pipelines.service.RunService`;
this module reads them and keeps the KFP fields a run row lacks. Every write
runs in its own transaction, retried when SQLite reports a busy database.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.documents import load_yaml_all
from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.store.db import retry_locked, session_scope
from ketch.pipelines import filters, owners
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.filters import Field, ListOptions
from ketch.pipelines.kfp_models import status, ts
from ketch.pipelines.tables import (
    ExecutionRow,
    KfpExperimentRow,
    KfpPipelineRow,
    KfpPipelineVersionRow,
    KfpRecurringRunRow,
    KfpRunMetaRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"
DEFAULT_EXPERIMENT = "Default"
MAX_PACKAGE_BYTES = 32 * 1024 * 1024
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING")


class FailedPrecondition(Conflict):
    """The request conflicts with the state of the resource (gRPC FAILED_PRECONDITION)."""

    grpc_code = 9


def now() -> datetime:
    return datetime.now(UTC)


def namespace_or_default(namespace: str | None) -> str:
    """KFP single-user clients send an empty namespace: that is the default one."""
    return (namespace or "").strip() or DEFAULT_NAMESPACE


def new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- list fields

R = PipelineRunRow
RUN_FIELDS: dict[str, Field] = {
    "run_id": Field(R.id),
    "id": Field(R.id),
    "display_name": Field(R.display_name),
    "name": Field(R.display_name),
    "pipeline_name": Field(R.pipeline_name),
    "state": Field(R.state),
    "storage_state": Field(R.storage_state),
    "namespace": Field(R.namespace),
    "experiment_id": Field(R.experiment_id, nullable=True),
    "pipeline_id": Field(R.pipeline_id, nullable=True),
    "pipeline_version_id": Field(R.pipeline_version_id, nullable=True),
    "recurring_run_id": Field(R.recurring_run_id, nullable=True),
    "created_at": Field(R.created_at, "time"),
    "finished_at": Field(R.finished_at, "time", nullable=True),
}
P = KfpPipelineRow
PIPELINE_FIELDS: dict[str, Field] = {
    "pipeline_id": Field(P.id),
    "id": Field(P.id),
    "name": Field(P.name),
    "display_name": Field(P.display_name),
    "description": Field(P.description),
    "namespace": Field(P.namespace),
    "created_at": Field(P.created_at, "time"),
}
V = KfpPipelineVersionRow
VERSION_FIELDS: dict[str, Field] = {
    "pipeline_version_id": Field(V.id),
    "id": Field(V.id),
    "pipeline_id": Field(V.pipeline_id),
    "name": Field(V.name),
    "display_name": Field(V.display_name),
    "description": Field(V.description),
    "created_at": Field(V.created_at, "time"),
}
E = KfpExperimentRow
EXPERIMENT_FIELDS: dict[str, Field] = {
    "experiment_id": Field(E.id),
    "id": Field(E.id),
    "display_name": Field(E.display_name),
    "name": Field(E.display_name),
    "description": Field(E.description),
    "namespace": Field(E.namespace),
    "storage_state": Field(E.storage_state),
    "created_at": Field(E.created_at, "time"),
}
S = KfpRecurringRunRow
RECURRING_FIELDS: dict[str, Field] = {
    "recurring_run_id": Field(S.id),
    "id": Field(S.id),
    "display_name": Field(S.display_name),
    "name": Field(S.display_name),
    "description": Field(S.description),
    "namespace": Field(S.namespace),
    "experiment_id": Field(S.experiment_id, nullable=True),
    "pipeline_id": Field(S.pipeline_id, nullable=True),
    "pipeline_version_id": Field(S.pipeline_version_id, nullable=True),
    "mode": Field(S.mode),
    "created_at": Field(S.created_at, "time"),
    "updated_at": Field(S.updated_at, "time"),
}


@dataclass
class Page:
    items: list[Any]
    total_size: int
    next_page_token: str


def _page(
    s: Session,
    model: Any,
    fields: Mapping[str, Field],
    opts: ListOptions,
    where: Sequence[Any],
    *,
    resource: str,
) -> Page:
    """One keyset page of ``model`` rows matching ``where`` and the filter."""
    id_column = model.id if hasattr(model, "id") else model.run_id
    conditions = [*where, *filters.filter_clauses(opts.filter, fields, resource=resource)]
    total = s.execute(select(func.count()).select_from(model).where(*conditions)).scalar_one()
    # Ids first, then the rows: sorting and skipping touch only the small leading
    # columns, never a wide JSON column such as a run's pipeline_spec.
    stmt = select(id_column).where(*conditions)
    after = filters.keyset_clause(opts, fields, id_column)
    if after is not None:
        stmt = stmt.where(after)
    size = opts.page_size
    ids = list(
        s.execute(
            stmt.order_by(*filters.order_by(opts, fields, id_column)).limit(size + 1)
        ).scalars()
    )
    found = (
        {r.id: r for r in s.execute(select(model).where(id_column.in_(ids[:size]))).scalars()}
        if ids
        else {}
    )
    rows = [found[i] for i in ids[:size] if i in found]
    token = ""
    if len(ids) > size and rows:
        last = rows[-1]
        sort_col = fields[opts.sort_key].column
        token = filters.next_token(opts, getattr(last, sort_col.key), last.id)
    return Page(rows, int(total), token)


def _write(url: str | None, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in a write transaction (retried while SQLite is busy)."""

    def attempt() -> T:
        with session_scope(url) as s:
            return fn(s)

    return retry_locked(attempt)


def _found(s: Session, model: Any, key: str, what: str, **error: Any) -> Any:
    """The ``model`` row with primary key ``key``, or NotFound ("<what> 'key' not found")."""
    row = s.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key!r} not found", **error)
    return row


def _scope(model: Any, namespace: str | None, experiment_id: str | None) -> list[Any]:
    """Rows of one experiment when it is given, else of one namespace."""
    if experiment_id:
        return [model.experiment_id == experiment_id]
    return [model.namespace == namespace_or_default(namespace)]


# ---------------------------------------------------------------- pipeline packages


def _choose_member(names: list[str]) -> str:
    candidates = [n for n in names if n.endswith((".yaml", ".yml", ".json"))]
    if not candidates:
        raise InvalidSpec("the package holds no pipeline .yaml/.json file", field="uploadfile")
    for preferred in ("pipeline.yaml", "pipeline.yml", "pipeline.json"):
        if preferred in candidates:
            return preferred
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidSpec(
        f"the package holds several pipeline files ({', '.join(sorted(candidates))}); "
        "name one pipeline.yaml",
        field="uploadfile",
    )


def _unpack(data: bytes) -> bytes:
    """The pipeline file inside a .tar.gz or .zip package (the data itself otherwise)."""
    if data[:2] == b"\x1f\x8b":
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                member = members[_choose_member(list(members))]
                if member.size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec(
                        "the pipeline file in the package is too large", field="uploadfile"
                    )
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidSpec(
                f"the package is not a valid .tar.gz: {exc}", field="uploadfile"
            ) from exc
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                name = _choose_member([i.filename for i in zf.infolist() if not i.is_dir()])
                if zf.getinfo(name).file_size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec(
                        "the pipeline file in the package is too large", field="uploadfile"
                    )
                return zf.read(name)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidSpec(
                f"the package is not a valid .zip: {exc}", field="uploadfile"
            ) from exc
    return data


def parse_package(data: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A pipeline package (compiled YAML/JSON, or a .tar.gz/.zip holding one) as
    ``(pipeline_spec, platform_spec)``; the spec is checked."""
    raw = _unpack(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpec("the pipeline file is not UTF-8 text", field="uploadfile") from exc
    docs = load_yaml_all(text, field="uploadfile")
    if not docs:
        raise InvalidSpec("the pipeline file is empty", field="uploadfile")
    spec, platform = normalize_spec(docs[0], where="uploadfile")
    for extra in docs[1:]:
        if not isinstance(extra, dict):
            raise InvalidSpec(
                "a second YAML document must be the platform spec mapping", field="uploadfile"
            )
        platform = {**(platform or {}), **extra}
    return spec, platform


def normalize_spec(
    doc: Any, *, where: str = "pipeline_spec", check: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A pipeline spec as sent by KFP clients (the IR, a PipelineJob, or
    ``{pipeline_spec, platform_spec}``) as ``(ir, platform_spec)``; with ``check``
    the IR is validated (``RunService.submit`` validates what it runs anyway)."""
    if not isinstance(doc, dict):
        raise InvalidSpec(
            f"expected a PipelineSpec mapping, found {type(doc).__name__}", field=where
        )
    platform: dict[str, Any] | None = None
    if "root" not in doc and isinstance(doc.get("pipeline_spec"), dict):
        platform = doc.get("platform_spec") or None
        doc = doc["pipeline_spec"]
    elif "root" not in doc and isinstance(doc.get("pipelineSpec"), dict) and "platformSpec" in doc:
        platform = doc.get("platformSpec") or None
        doc = doc["pipelineSpec"]
    if platform is not None and not isinstance(platform, dict):
        raise InvalidSpec("platform_spec must be a mapping", field=where)
    if platform is not None and not any(platform.values()):
        platform = None  # {"platforms": {}} says nothing
    if not check:
        if "pipelineSpec" in doc and "root" not in doc:
            doc = doc["pipelineSpec"]
        return doc, platform
    ir = ir_loader.load(doc)
    return ir.spec, platform


# ---------------------------------------------------------------- the catalog


class Catalog:
    """KFP pipelines, versions, experiments, recurring runs and run views in one store."""

    def __init__(self, url: str | None = None):
        self.url = url

    # ------------------------------------------------------------ experiments

    def default_experiment(self, namespace: str | None = None) -> KfpExperimentRow:
        """The namespace's "Default" experiment, created when it is missing."""
        ns = namespace_or_default(namespace)
        found = self._experiment_by_name(DEFAULT_EXPERIMENT, ns)
        if found is not None:
            return found
        try:
            return self.create_experiment(
                DEFAULT_EXPERIMENT, "All runs created without an experiment.", ns
            )
        except Conflict:  # created meanwhile by another request
            found = self._experiment_by_name(DEFAULT_EXPERIMENT, ns)
            assert found is not None
            return found

    def _experiment_by_name(self, name: str, namespace: str) -> KfpExperimentRow | None:
        with session_scope(self.url, readonly=True) as s:
            return s.execute(
                select(E).where(E.namespace == namespace, E.display_name == name)
            ).scalar_one_or_none()

    def create_experiment(
        self, display_name: str, description: str, namespace: str | None
    ) -> KfpExperimentRow:
        name = (display_name or "").strip()
        if not name:
            raise InvalidSpec("an experiment needs a display_name", field="display_name")
        ns = namespace_or_default(namespace)
        row = KfpExperimentRow(
            id=new_id(),
            display_name=name,
            description=description or "",
            namespace=ns,
            storage_state="AVAILABLE",
            created_at=now(),
        )

        def write(s: Session) -> KfpExperimentRow:
            s.add(row)
            s.flush()
            return row

        try:
            return _write(self.url, write)
        except IntegrityError:
            raise Conflict(
                f"an experiment named {name!r} already exists in namespace {ns!r}",
                field="display_name",
            ) from None

    def get_experiment(self, experiment_id: str) -> KfpExperimentRow:
        with session_scope(self.url, readonly=True) as s:
            return _found(s, E, experiment_id, "experiment")

    def last_run_times(self, experiment_ids: list[str]) -> dict[str, datetime]:
        if not experiment_ids:
            return {}
        with session_scope(self.url, readonly=True) as s:
            rows = s.execute(
                select(R.experiment_id, func.max(R.created_at))
                .where(R.experiment_id.in_(experiment_ids))
                .group_by(R.experiment_id)
            ).all()
        return {str(eid): when for eid, when in rows if when is not None}

    def list_experiments(self, opts: ListOptions, namespace: str | None) -> Page:
        with session_scope(self.url, readonly=True) as s:
            return _page(
                s,
                E,
                EXPERIMENT_FIELDS,
                opts,
                [E.namespace == namespace_or_default(namespace)],
                resource="experiments",
            )

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment; its runs and recurring runs stay (as in KFP)."""

        def write(s: Session) -> None:
            _found(s, E, experiment_id, "experiment")
            s.execute(delete(E).where(E.id == experiment_id))

        _write(self.url, write)

    def set_experiment_storage(self, experiment_id: str, storage_state: str) -> None:
        """Archive (with all its runs, and disabling its recurring runs) or unarchive."""

        def write(s: Session) -> None:
            row = _found(s, E, experiment_id, "experiment")
            row.storage_state = storage_state
            if storage_state == "ARCHIVED":
                s.execute(
                    update(R)
                    .where(R.experiment_id == experiment_id)
                    .values(storage_state="ARCHIVED")
                )
                s.execute(
                    update(S)
                    .where(S.experiment_id == experiment_id)
                    .values(mode="DISABLE", updated_at=now())
                )

        _write(self.url, write)

    # ------------------------------------------------------------ pipelines

    def create_pipeline(
        self,
        name: str,
        display_name: str | None,
        description: str | None,
        namespace: str | None,
        version: dict[str, Any] | None = None,
    ) -> tuple[KfpPipelineRow, KfpPipelineVersionRow | None]:
        """Create a pipeline, and with ``version`` (create_version's arguments) its first version."""
        name = (name or display_name or "").strip()
        if not name:
            raise InvalidSpec("a pipeline needs a name or display_name", field="name")
        ns = namespace_or_default(namespace)
        row = KfpPipelineRow(
            id=new_id(),
            name=name,
            display_name=(display_name or name).strip(),
            description=description or "",
            namespace=ns,
            created_at=now(),
        )
        vrow = (
            self._version_row(row.id, **{"name": name, **version}) if version is not None else None
        )

        def write(s: Session) -> tuple[KfpPipelineRow, KfpPipelineVersionRow | None]:
            s.add(row)
            s.flush()
            if vrow is not None:
                s.add(vrow)
                s.flush()
            return row, vrow

        try:
            return _write(self.url, write)
        except IntegrityError:
            raise Conflict(
                f"a pipeline named {name!r} already exists in namespace {ns!r}; "
                "upload a new version of it instead",
                field="name",
            ) from None

    def get_pipeline(self, pipeline_id: str) -> KfpPipelineRow:
        with session_scope(self.url, readonly=True) as s:
            return _found(s, P, pipeline_id, "pipeline")

    def get_pipeline_by_name(self, name: str, namespace: str | None) -> KfpPipelineRow:
        ns = namespace_or_default(namespace)
        with session_scope(self.url, readonly=True) as s:
            row = s.execute(select(P).where(P.namespace == ns, P.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"pipeline named {name!r} not found in namespace {ns!r}")
        return row

    def list_pipelines(self, opts: ListOptions, namespace: str | None) -> Page:
        with session_scope(self.url, readonly=True) as s:
            return _page(
                s,
                P,
                PIPELINE_FIELDS,
                opts,
                [P.namespace == namespace_or_default(namespace)],
                resource="pipelines",
            )

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> None:
        def write(s: Session) -> None:
            _found(s, P, pipeline_id, "pipeline")
            versions = s.execute(
                select(func.count()).select_from(V).where(V.pipeline_id == pipeline_id)
            ).scalar_one()
            if versions and not cascade:
                raise FailedPrecondition(
                    f"pipeline {pipeline_id!r} has {versions} version(s); delete them first "
                    "or pass cascade=true",
                )
            s.execute(delete(V).where(V.pipeline_id == pipeline_id))
            s.execute(delete(P).where(P.id == pipeline_id))

        _write(self.url, write)

    # ------------------------------------------------------------ versions

    @staticmethod
    def _version_row(
        pipeline_id: str,
        *,
        name: str,
        spec: dict[str, Any],
        platform_spec: dict[str, Any] | None = None,
        display_name: str | None = None,
        description: str | None = None,
        package_url: str | None = None,
        code_source_url: str | None = None,
    ) -> KfpPipelineVersionRow:
        name = (name or display_name or "").strip()
        if not name:
            raise InvalidSpec("a pipeline version needs a name or display_name", field="name")
        return KfpPipelineVersionRow(
            id=new_id(),
            pipeline_id=pipeline_id,
            name=name,
            display_name=(display_name or name).strip(),
            description=description or "",
            pipeline_spec=spec,
            platform_spec=platform_spec,
            package_url=package_url or None,
            code_source_url=code_source_url or None,
            created_at=now(),
        )

    def create_version(self, pipeline_id: str, **version: Any) -> KfpPipelineVersionRow:
        row = self._version_row(pipeline_id, **version)

        def write(s: Session) -> KfpPipelineVersionRow:
            _found(s, P, pipeline_id, "pipeline", field="pipeline_id")
            s.add(row)
            s.flush()
            return row

        try:
            return _write(self.url, write)
        except IntegrityError:
            raise Conflict(
                f"pipeline {pipeline_id!r} already has a version named {row.name!r}", field="name"
            ) from None

    def get_version(self, pipeline_id: str | None, version_id: str) -> KfpPipelineVersionRow:
        with session_scope(self.url, readonly=True) as s:
            row = s.get(V, version_id)
        if row is None or (pipeline_id and row.pipeline_id != pipeline_id):
            raise NotFound(
                f"pipeline version {version_id!r} not found"
                + (f" in pipeline {pipeline_id!r}" if pipeline_id else "")
            )
        return row

    def latest_version(self, pipeline_id: str) -> KfpPipelineVersionRow:
        self.get_pipeline(pipeline_id)
        with session_scope(self.url, readonly=True) as s:
            row = s.execute(
                select(V)
                .where(V.pipeline_id == pipeline_id)
                .order_by(V.created_at.desc(), V.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"pipeline {pipeline_id!r} has no versions; upload one first")
        return row

    def list_versions(self, pipeline_id: str, opts: ListOptions) -> Page:
        self.get_pipeline(pipeline_id)
        with session_scope(self.url, readonly=True) as s:
            return _page(
                s,
                V,
                VERSION_FIELDS,
                opts,
                [V.pipeline_id == pipeline_id],
                resource="pipeline versions",
            )

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        def write(s: Session) -> None:
            row = s.get(V, version_id)
            if row is None or row.pipeline_id != pipeline_id:
                raise NotFound(
                    f"pipeline version {version_id!r} not found in pipeline {pipeline_id!r}"
                )
            s.execute(delete(V).where(V.id == version_id))

        _write(self.url, write)

    # ------------------------------------------------------------ runs

    def _reap(self) -> None:
        """Runs of a ``ketch run`` that died end FAILED before anyone reads them."""
        try:
            owners.reap(self.url, min_interval=1.0)
        except Exception:  # a read must still answer
            pass

    def get_run(self, run_id: str) -> tuple[PipelineRunRow, KfpRunMetaRow | None]:
        self._reap()
        with session_scope(self.url, readonly=True) as s:
            row = _found(s, R, run_id, "run")
            meta = s.get(KfpRunMetaRow, run_id)
        return row, meta

    def list_runs(
        self, opts: ListOptions, *, namespace: str | None, experiment_id: str | None
    ) -> tuple[Page, dict[str, KfpRunMetaRow]]:
        where = _scope(R, namespace, experiment_id)
        self._reap()
        with session_scope(self.url, readonly=True) as s:
            page = _page(s, R, RUN_FIELDS, opts, where, resource="runs")
            ids = [r.id for r in page.items]
            metas = (
                {
                    m.run_id: m
                    for m in s.execute(
                        select(KfpRunMetaRow).where(KfpRunMetaRow.run_id.in_(ids))
                    ).scalars()
                }
                if ids
                else {}
            )
        return page, metas

    def set_run_meta(
        self,
        run_id: str,
        *,
        description: str = "",
        service_account: str = "",
        scheduled_at: datetime | None = None,
    ) -> None:
        if not description and not service_account and scheduled_at is None:
            return

        def write(s: Session) -> None:
            s.merge(
                KfpRunMetaRow(
                    run_id=run_id,
                    description=description,
                    service_account=service_account,
                    scheduled_at=scheduled_at,
                )
            )

        _write(self.url, write)

    def set_run_storage(self, run_id: str, storage_state: str) -> None:
        def write(s: Session) -> None:
            row = _found(s, R, run_id, "run")
            row.storage_state = storage_state

        _write(self.url, write)

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its tasks; artifacts (files and lineage records) stay."""

        def write(s: Session) -> None:
            _found(s, R, run_id, "run")
            s.execute(delete(KfpRunMetaRow).where(KfpRunMetaRow.run_id == run_id))
            s.execute(delete(PipelineTaskRow).where(PipelineTaskRow.run_id == run_id))
            s.execute(delete(R).where(R.id == run_id))

        _write(self.url, write)

    def task_rows(self, run_id: str) -> list[PipelineTaskRow]:
        with session_scope(self.url, readonly=True) as s:
            return list(
                s.execute(
                    select(PipelineTaskRow)
                    .where(PipelineTaskRow.run_id == run_id)
                    .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
                ).scalars()
            )

    def task_details(self, run_id: str) -> list[dict[str, Any]]:
        """The run's tasks as KFP ``PipelineTaskDetail`` objects."""
        with session_scope(self.url, readonly=True) as s:
            tasks = list(
                s.execute(
                    select(PipelineTaskRow)
                    .where(PipelineTaskRow.run_id == run_id)
                    .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
                ).scalars()
            )
            executions = s.execute(
                select(ExecutionRow.id, ExecutionRow.task_id)
                .where(ExecutionRow.run_id == run_id)
                .order_by(ExecutionRow.id)
            ).all()
            latest: dict[str, int] = {}
            for exec_id, task_id in executions:
                if task_id:
                    latest[task_id] = exec_id  # ordered by id: the last one wins
            events: dict[int, list[tuple[str, str, int]]] = {}
            if latest:
                for exec_id, etype, key, art_id in s.execute(
                    select(
                        LineageEventRow.execution_id,
                        LineageEventRow.type,
                        LineageEventRow.key,
                        LineageEventRow.artifact_id,
                    )
                    .where(LineageEventRow.execution_id.in_(list(latest.values())))
                    .order_by(LineageEventRow.id)
                ).all():
                    events.setdefault(exec_id, []).append((etype, key, art_id))
        by_path = {t.path: t for t in tasks}
        children: dict[str, list[PipelineTaskRow]] = {}
        for t in tasks:
            if t.parent_path:
                children.setdefault(t.parent_path, []).append(t)
        details = []
        for t in tasks:
            task_exec = latest.get(t.id)
            inputs: dict[str, dict[str, list[str]]] = {}
            outputs: dict[str, dict[str, list[str]]] = {}
            for etype, key, art_id in events.get(task_exec, []) if task_exec is not None else []:
                target = inputs if etype == "INPUT" else outputs
                ids = target.setdefault(key, {"artifact_ids": []})["artifact_ids"]
                if str(art_id) not in ids:
                    ids.append(str(art_id))
            parent = by_path.get(t.parent_path) if t.parent_path else None
            detail: dict[str, Any] = {
                "run_id": run_id,
                "task_id": t.id,
                "display_name": t.display_name,
                "create_time": ts(t.created_at),
                "start_time": ts(t.started_at),
                "end_time": ts(t.finished_at),
                "state": "SUCCEEDED" if t.cached and t.state == "SUCCEEDED" else t.state,
                "execution_id": str(task_exec) if task_exec is not None else None,
                "error": status(t.error) if t.error else None,
                "inputs": inputs,
                "outputs": outputs,
                "parent_task_id": parent.id if parent is not None else None,
                "child_tasks": [
                    {"task_id": c.id, "pod_name": ""} for c in children.get(t.path, [])
                ],
            }
            details.append({k: v for k, v in detail.items() if v is not None})
        return details

    # ------------------------------------------------------------ recurring runs

    def create_recurring(self, row: KfpRecurringRunRow) -> KfpRecurringRunRow:
        def write(s: Session) -> KfpRecurringRunRow:
            s.add(row)
            s.flush()
            return row

        return _write(self.url, write)

    def get_recurring(self, recurring_run_id: str) -> KfpRecurringRunRow:
        with session_scope(self.url, readonly=True) as s:
            return _found(s, S, recurring_run_id, "recurring run")

    def list_recurring(
        self, opts: ListOptions, *, namespace: str | None, experiment_id: str | None
    ) -> Page:
        where = _scope(S, namespace, experiment_id)
        with session_scope(self.url, readonly=True) as s:
            return _page(s, S, RECURRING_FIELDS, opts, where, resource="recurring runs")

    def delete_recurring(self, recurring_run_id: str) -> None:
        """Delete a recurring run; the runs it created stay."""

        def write(s: Session) -> None:
            _found(s, S, recurring_run_id, "recurring run")
            s.execute(delete(S).where(S.id == recurring_run_id))

        _write(self.url, write)

    def set_recurring_mode(self, recurring_run_id: str, mode: str) -> None:
        def write(s: Session) -> None:
            row = _found(s, S, recurring_run_id, "recurring run")
            if row.mode != mode:
                row.mode = mode
                row.updated_at = now()
                row.error = None

        _write(self.url, write)


def dumps(obj: Any) -> bytes:
    """Compact JSON (non-ASCII kept) for responses."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
