"""The Python surface of the pipeline engine: ``ketch.run(...)`` and its Run."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ketch.core.backend import Backend
from ketch.core.conditions import RunState
from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.store.db import Database
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.engine import Engine
from ketch.pipelines.executor import images_warning
from ketch.pipelines.lightweight import Packages
from ketch.pipelines.records import Recorder, public_artifact
from ketch.pipelines.service import (
    execute,
    prepare,
    process_owner,
    reap_orphaned_runs,
    warmup_folder,
)
from ketch.pipelines.tasks import Node


@dataclass
class TaskInfo:
    path: str
    name: str
    type: str
    state: str
    cached: bool = False
    attempts: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    log_path: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass
class Run:
    id: str
    name: str
    pipeline_name: str
    state: str
    outputs: dict[str, Any]
    tasks: dict[str, TaskInfo]
    error: str | None
    pipeline_root: str
    warnings: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.state == RunState.SUCCEEDED

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, state={self.state!r}, tasks={len(self.tasks)})"


def to_kfp_artifact(art: dict[str, Any]) -> Any:
    """A ``kfp.dsl`` artifact object (Dataset, Model, ...) for a stored artifact."""
    from kfp.dsl.types import artifact_types

    title = art.get("type", {}).get("schemaTitle", "system.Artifact")
    cls = next(
        (
            c
            for c in vars(artifact_types).values()
            if isinstance(c, type) and getattr(c, "schema_title", None) == title
        ),
        artifact_types.Artifact,
    )
    obj = cls(
        name=art.get("name", ""), uri=art.get("uri", ""), metadata=dict(art.get("metadata", {}))
    )
    return obj


def task_info(node: Node) -> TaskInfo:
    return TaskInfo(
        path=node.path,
        name=node.name,
        type=node.type,
        state=node.state,
        cached=node.cached,
        attempts=node.attempts,
        inputs={
            **node.inputs,
            **{k: [public_artifact(a) for a in v] for k, v in node.input_artifacts.items()},
        },
        outputs={
            **node.outputs,
            **{k: [public_artifact(a) for a in v] for k, v in node.output_artifacts.items()},
        },
        log_path=node.log_path,
        error=node.error,
        started_at=node.started_at,
        finished_at=node.finished_at,
        resources=dict(node.resources),
    )


def run(
    pipeline: Any,
    arguments: dict[str, Any] | None = None,
    *,
    pipeline_root: str | None = None,
    enable_caching: bool | None = None,
    pipeline_name: str | None = None,
    max_parallelism: int | None = None,
    display_name: str | None = None,
    listener: Callable[[Node], None] | None = None,
    backend: Backend,
    packages: Packages | None = None,
    database: Database | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Run:
    """Run a KFP pipeline locally and wait for it; its tasks start through
    ``backend`` (:func:`ketch.run` passes the composition root's). ``packages`` knows
    what this interpreter has installed (what a warm task interpreter preloads); give
    the same one to every run of a process, as :func:`ketch.run` does: reading the
    installed distributions costs about 0.1 s. ``database`` is the store the run is
    recorded in (default: one opened for this call on ``KETCH_DATABASE_URL`` or
    ``KETCH_HOME``'s SQLite file, closed when it returns); :func:`ketch.run` passes the
    process's, whose warm connections and compiled statements later runs reuse.

    ``pipeline`` is a ``@dsl.pipeline`` function, a ``.py`` file, or a compiled
    ``.yaml``/``.json`` pipeline. Bad input raises ``InvalidSpec``; a failing
    component does not raise: the returned Run is FAILED and ``error`` says why.
    Ctrl-C (SIGINT) or SIGTERM in the main thread cancels the run: running tasks
    are terminated and the run is stored as CANCELED.
    """
    from ketch.pipelines.tables import MIGRATIONS

    if arguments is not None and not isinstance(arguments, dict):
        raise InvalidSpec(
            "arguments must be a mapping of parameter names to values", field="arguments"
        )
    ir = ir_loader.load(pipeline, pipeline_name=pipeline_name)
    ctx, args = prepare(
        ir,
        dict(arguments or {}),
        display_name=display_name,
        pipeline_root=pipeline_root,
        enable_caching=enable_caching,
    )
    with contextlib.ExitStack() as stack:
        if database is None:  # this call's own connections, closed when it returns
            database = stack.enter_context(Database())
        database.migrate([MIGRATIONS])
        reap_orphaned_runs(database)
        recorder = Recorder(database)
        # The run belongs to this process: no server resumes it, and if this process
        # dies the next reader marks it FAILED.
        recorder.create_run(ctx, args, owner=process_owner())
        if on_start is not None:
            on_start(ctx.run_id)
        engines: list[Engine] = []

        def cancel_engines() -> None:
            for e in engines:
                e.cancel()

        previous = _install_signals(cancel_engines)
        watcher = _CancelWatcher(database, ctx.run_id, engines)
        watcher.start()
        packages = packages or Packages()
        try:
            state, outputs, error, engine = execute(
                ctx,
                args,
                backend=backend,
                recorder=recorder,
                packages=packages,
                max_parallelism=max_parallelism,
                listener=listener,
                on_engine=engines.append,
                # warm interpreters only once a task really runs: a cached run needs none
                on_first_execution=lambda: _prewarm(backend, ir, packages),
            )
        finally:
            watcher.stop()
            _restore_signals(previous)
    py_outputs: dict[str, Any] = dict(outputs["parameters"])
    for name, arts in outputs["artifacts"].items():
        objs = [to_kfp_artifact(a) for a in arts]
        py_outputs[name] = objs[0] if len(objs) == 1 and not _is_list_output(ir, name) else objs
    return Run(
        id=ctx.run_id,
        name=ctx.display_name,
        pipeline_name=ir.name,
        state=state,
        outputs=py_outputs,
        tasks={path: task_info(n) for path, n in engine.nodes.items()},
        error=error,
        pipeline_root=ctx.pipeline_root,
        warnings=[*ir.warnings, *filter(None, [images_warning(ir)])],
    )


class _CancelWatcher:
    """Cancels this process's run when someone asks for it through the store
    (``ketch runs cancel`` or the API mark a run CANCELING that its owner executes)."""

    def __init__(
        self, database: Database, run_id: str, engines: list[Engine], interval: float = 1.0
    ):
        self.database = database
        self.run_id = run_id
        self.engines = engines
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ketch-cancel-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        from ketch.pipelines.tables import PipelineRunRow

        while not self._stop.wait(self.interval):
            try:
                with self.database.session(readonly=True) as s:
                    row = s.get(PipelineRunRow, self.run_id)
                    state = row.state if row is not None else None
            except (SQLAlchemyError, OSError):  # the store is busy: look again next time
                continue
            if state == RunState.CANCELING:
                for engine in list(self.engines):
                    engine.cancel()
                return


def _is_list_output(ir: ir_loader.PipelineIR, name: str) -> bool:
    adef = ir.root.get("outputDefinitions", {}).get("artifacts", {}).get(name, {})
    return bool(adef.get("isArtifactList"))


def _prewarm(backend: Backend, ir: ir_loader.PipelineIR, packages: Packages) -> None:
    """Start the warm interpreters the pipeline's Python components will use."""
    import sys

    from ketch.core import config
    from ketch.pipelines import lightweight

    if not backend.abilities.prewarm:
        return
    sets: set[tuple[str, ...]] = {(lightweight.EXECUTOR_MODULE,)}
    for executor in ir.executors.values():
        component = (
            lightweight.parse(executor.get("container", {}), packages)
            if "container" in executor
            else None
        )
        if component is not None and not packages.missing_requirements(component):
            sets.add(packages.preload_modules(component))
    warmup = lightweight.warmup_argv(warmup_folder(config.ketch_home()))
    for preload in sorted(sets):
        try:
            # kfp is preloaded in full (not in its _KFP_RUNTIME mode): the same warm
            # interpreter then serves both inline components and target_image
            # modules, which use the compile-time API at import.
            backend.prewarm(
                sys.executable,
                preload,
                None,
                (lightweight.EXECUTOR_MODULE, list(warmup)),
            )
        except (RuntimeError, KetchError):  # the fork server is an optimisation only
            pass


def _install_signals(cancel: Callable[[], Any]) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        cancel()

    try:
        return signal.signal(signal.SIGINT, handler), signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _restore_signals(previous: Any) -> None:
    if previous is None:
        return
    try:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    except ValueError:
        pass
