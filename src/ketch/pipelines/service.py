"""Running pipelines: the shared path used by ``ketch run`` and by the server.

``prepare`` checks a pipeline and its arguments before anything is stored;
``execute`` drives the engine and stores the result. ``RunService`` runs
submitted pipelines in the background inside the server, cancels and retries
them, and resumes the ones that were in flight when the server stopped — tasks
that had finished are not executed again. It is one of the capability's services
(:mod:`ketch.core.services`): the server starts and stops it, and hands it the
compute backend.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from ketch.core import artifacts, config
from ketch.core.backend import Backend
from ketch.core.conditions import TERMINAL_RUN_STATES, RunState
from ketch.core.environments import Environments
from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.store.db import Database
from ketch.core.timestamps import utcnow
from ketch.pipelines import owners
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.engine import Engine
from ketch.pipelines.executor import LocalTaskRunner, images_warning
from ketch.pipelines.inputs import root_inputs
from ketch.pipelines.lightweight import Packages
from ketch.pipelines.quotas import admit_run
from ketch.pipelines.records import Recorder, public_artifact
from ketch.pipelines.tables import MIGRATIONS, PipelineRunRow
from ketch.pipelines.tasks import Node, RunContext

log = logging.getLogger(__name__)

ACTIVE_STATES = owners.ACTIVE_STATES
REAP_INTERVAL = 5.0  # seconds between checks for runs whose ketch run process died


def process_owner() -> str:
    """The owner recorded for the runs of this ``ketch run`` process."""
    return str(owners.current(owners.PROCESS))


def resolve_root(root: str | None, home: Path) -> str:
    root = root or config.artifacts_root(home)
    if "://" not in root or root.startswith("file://"):
        return str(Path(root.removeprefix("file://")).expanduser().resolve())
    try:
        artifacts.filesystem(root)
    except (artifacts.MissingFilesystem, artifacts.UnknownProtocol) as exc:
        raise InvalidSpec(
            f"pipeline root cannot be used: {exc.message}, or use a local directory",
            field="pipeline_root",
        ) from None
    return root


def check_reach(ctx: RunContext, backend: Backend) -> None:
    """Refuse a run whose tasks could not reach its files: a pipeline root on the
    control plane's disk (or Ketch's home, where tasks work and stage artifacts) that
    some of the backend's nodes do not mount (:meth:`Backend.unreachable`)."""
    root = ctx.pipeline_root
    if "://" not in root or root.startswith("file://"):
        problem = backend.unreachable(Path(root.removeprefix("file://")))
        if problem:
            raise InvalidSpec(
                f"pipeline root {root} cannot be used: {problem}; or give an fsspec URI "
                "every node reaches (s3://, gs://, ...) as the pipeline root",
                field="pipeline_root",
            )
    problem = backend.unreachable(ctx.work_dir)
    if problem:
        raise Conflict(
            f"the run's tasks could not reach their working folder: {problem} "
            "(Ketch's home, KETCH_HOME, must be on it)"
        )


def prepare(
    ir: ir_loader.PipelineIR,
    arguments: dict[str, Any],
    *,
    run_id: str | None = None,
    display_name: str | None = None,
    pipeline_root: str | None = None,
    enable_caching: bool | None = None,
    created_at: datetime | None = None,
    namespace: str = "default",
) -> tuple[RunContext, dict[str, Any]]:
    """Build a run's context and check its arguments (raises InvalidSpec)."""
    if not isinstance(arguments, dict):
        raise InvalidSpec(
            "arguments must be a mapping of parameter names to values", field="arguments"
        )
    home = config.ketch_home()
    home.mkdir(parents=True, exist_ok=True)
    created = created_at or utcnow()
    run_id = run_id or str(uuid.uuid4())
    ctx = RunContext(
        run_id=run_id,
        display_name=display_name or f"{ir.name}-{created.strftime('%Y%m%d-%H%M%S')}",
        ir=ir,
        pipeline_root=resolve_root(pipeline_root, home),
        work_dir=home / "runs" / run_id,
        enable_caching=enable_caching,
        created_at=created,
        namespace=namespace,
    )
    root_inputs(ir, arguments)  # check the arguments now, before anything is stored
    return ctx, arguments


def execute(
    ctx: RunContext,
    arguments: dict[str, Any],
    *,
    backend: Backend,
    recorder: Recorder,
    packages: Packages,
    max_parallelism: int | None = None,
    listener: Callable[[Node], None] | None = None,
    on_engine: Callable[[Engine], None] | None = None,
    on_first_execution: Callable[[], Any] | None = None,
) -> tuple[str, dict[str, Any], str | None, Engine]:
    """Run the engine to the end and store the run's final state.

    ``packages``: what the interpreter running Ketch has installed (read once per
    holder). ``on_first_execution`` is called once, when the first task is actually
    run (a run whose tasks are all cached or reused never calls it)."""
    home = config.ketch_home()
    warning = images_warning(ctx.ir)
    if warning:  # once per run
        log.warning("run %s: %s", ctx.run_id, warning)
    runner = LocalTaskRunner(
        backend,
        recorder,
        Environments(home / "venvs", backend),
        packages,
        warmup_folder(home),
        on_first_execution=on_first_execution,
    )
    engine = Engine(
        ctx,
        runner,
        recorder,
        max_parallelism=max_parallelism or backend.cpus(),
        listener=listener,
    )
    if on_engine is not None:
        on_engine(engine)
    try:
        state, outputs, error = engine.execute(arguments)
    except Exception as exc:  # a bug must not leave the run RUNNING forever
        log.exception("run %s crashed", ctx.run_id)
        state, outputs, error = (
            RunState.FAILED.value,
            {"parameters": {}, "artifacts": {}},
            f"internal error: {exc}",
        )
    stored = {
        **outputs["parameters"],
        **{k: [public_artifact(a) for a in v] for k, v in outputs["artifacts"].items()},
    }
    if not ctx.interrupted:
        recorder.finish_run(ctx.run_id, state, stored, error)
    return state, outputs, error, engine


def warmup_folder(home: Path) -> Path:
    """Where the warm-up task that warm interpreters run once is written."""
    return home / "warmup"


def _stored_context(row: PipelineRunRow) -> tuple[RunContext, dict[str, Any]]:
    """The context to execute a stored run again (resume, retry) under its own id."""
    ir = ir_loader.PipelineIR(spec=row.pipeline_spec, source=f"run {row.id}")
    return prepare(
        ir,
        row.parameters or {},
        run_id=row.id,
        display_name=row.display_name,
        pipeline_root=row.pipeline_root,
        enable_caching=row.enable_caching,
        created_at=row.created_at,
        namespace=row.namespace or "default",
    )


def cancel_stored(recorder: Recorder, run_id: str, owner: str | None) -> None:
    """Cancel a run that no engine of this process executes: its live owner (a ``ketch
    run``) is asked through the store (CANCELING, which it watches for); with its owner
    gone, it ends CANCELED now."""
    if not owners.is_mine(owner) and not owners.is_gone(owners.parse(owner)):
        recorder.set_run_state(run_id, RunState.CANCELING)
    else:
        recorder.set_run_state(
            run_id, RunState.CANCELED, finished_at=utcnow(), error="the run was canceled"
        )


def reap_orphaned_runs(database: Database) -> int:
    """Mark runs of ``ketch run`` processes that no longer exist as FAILED."""
    return owners.reap(database)


class RunService:
    """Executes pipeline runs in the background of a long-lived process (the server),
    storing them in ``database``."""

    def __init__(
        self,
        database: Database,
        *,
        backend: Backend,
        max_parallelism: int | None = None,
        sole_server: bool = False,
    ):
        """``backend``: what every run's tasks are started through. ``sole_server``:
        this process holds the store's control-plane lock, so no other server is
        running: every server run it does not own is orphaned, even one whose owner
        was recorded under another host name (a laptop's name changes)."""
        self.database = database
        self.sole_server = sole_server
        self.backend = backend
        self.max_parallelism = max_parallelism
        self.recorder = Recorder(database)
        self.packages = Packages()
        # Reads of runs through this service's server end the runs of dead processes.
        self.reaper = owners.Reaper(database)
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._done: dict[str, threading.Event] = {}
        self._stopping = False
        self.owner = owners.current(owners.SERVER).with_token()
        self._stopped = threading.Event()
        self._reaper: threading.Thread | None = None
        # Called with a run id whenever a run is created or ends (watchers, UIs).
        self.listeners: list[Callable[[str], None]] = []

    def _orphaned(self, stored: str | None) -> bool:
        owner = owners.parse(stored)
        if self.sole_server and (owner is None or owner.kind == owners.SERVER):
            return not owners.is_mine(stored)
        return owners.is_gone(owner)

    def _changed(self, run_id: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(run_id)
            except Exception:  # a listener must never break a run
                log.debug("run listener failed", exc_info=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> list[str]:
        """Resume the server runs that were in flight when their server stopped.

        Only runs whose owner is gone are taken over (claimed with a conditional
        update, so two servers never resume the same run); runs of a live server
        or of a live ``ketch run`` are not touched.
        """
        self.database.migrate([MIGRATIONS])
        reap_orphaned_runs(self.database)
        resumed: list[str] = []
        pending: list[tuple[str, str, tuple[RunContext, dict[str, Any]] | InvalidSpec]] = []
        with self.database.session(readonly=True) as s:
            rows = s.execute(
                select(PipelineRunRow).where(
                    PipelineRunRow.state.in_(ACTIVE_STATES),
                    or_(
                        PipelineRunRow.owner == owners.LEGACY_SERVER,
                        PipelineRunRow.owner.like(f"{owners.SERVER}:%"),
                    ),
                )
            ).scalars()
            candidates = [row for row in rows if self._orphaned(row.owner)]
            for row in candidates:
                if not owners.claim(self.database, row.id, row.owner, self.owner):
                    continue  # another server took it over first, or it ended
                try:
                    pending.append((row.id, row.state, _stored_context(row)))
                except InvalidSpec as exc:
                    pending.append((row.id, row.state, exc))
        for run_id, state, prepared in pending:
            if state == RunState.CANCELING:
                self.recorder.set_run_state(
                    run_id,
                    RunState.CANCELED,
                    finished_at=utcnow(),
                    error="canceled while the server was down",
                )
            elif isinstance(prepared, InvalidSpec):
                self.recorder.set_run_state(
                    run_id,
                    RunState.FAILED,
                    finished_at=utcnow(),
                    error=f"cannot resume: {prepared}",
                )
            else:
                self._launch(*prepared, resume=True)
                resumed.append(run_id)
        if resumed:
            log.info("resumed %d run(s) that were in flight: %s", len(resumed), ", ".join(resumed))
        self._reaper = threading.Thread(
            target=self._reap_loop, name="ketch-run-reaper", daemon=True
        )
        self._reaper.start()
        return resumed

    def _reap_loop(self) -> None:
        """Runs of ``ketch run`` processes that die while the server runs end FAILED
        within a few seconds, so watchers and the dashboard see it without a read."""
        while not self._stopped.wait(REAP_INTERVAL):
            try:
                ended = owners.reap_runs(self.database)
            except Exception:  # the store is busy: look again next time
                log.debug("could not check the owners of in-flight runs", exc_info=True)
                continue
            for run_id in ended:
                self._changed(run_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop executing: in-flight runs stay RUNNING and resume at the next start."""
        self._stopping = True
        self._stopped.set()
        with self._lock:
            engines = list(self._engines.values())
            threads = list(self._threads.values())
        for engine in engines:
            engine.cancel(interrupt=True)
        for thread in threads:
            thread.join(timeout)
        try:  # its runs may now be resumed, in this process too
            owners.release(self.database, self.owner)
        except Exception:
            log.warning(
                "could not hand the in-flight runs of this run service back; the next "
                "server process resumes them",
                exc_info=True,
            )

    # ------------------------------------------------------------ runs

    def submit(
        self,
        spec: dict[str, Any],
        *,
        parameters: dict[str, Any] | None = None,
        display_name: str | None = None,
        namespace: str = "default",
        experiment_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        recurring_run_id: str | None = None,
        enable_caching: bool | None = None,
        pipeline_root: str | None = None,
    ) -> str:
        """Check and store a run, then execute it in the background. Returns its id."""
        if self._stopping:
            raise Conflict("the server is shutting down; submit the run again after it restarts")
        ir = ir_loader.load(spec)
        ctx, args = prepare(
            ir,
            dict(parameters or {}),
            display_name=display_name,
            pipeline_root=pipeline_root,
            enable_caching=enable_caching,
            namespace=namespace,
        )
        check_reach(ctx, self.backend)
        with admit_run(self.database, namespace, ctx.run_id):  # its namespace's run quota
            self.recorder.create_run(
                ctx,
                args,
                owner=str(self.owner),
                state=RunState.PENDING,
                namespace=namespace,
                experiment_id=experiment_id,
                pipeline_id=pipeline_id,
                pipeline_version_id=pipeline_version_id,
                recurring_run_id=recurring_run_id,
            )
        self._launch(ctx, args, resume=False)
        self._changed(ctx.run_id)
        return ctx.run_id

    def _launch(self, ctx: RunContext, args: dict[str, Any], *, resume: bool) -> None:
        done = threading.Event()

        def work() -> None:
            try:
                if resume:
                    ctx.task_ids, ctx.finished = self.recorder.load_progress(ctx.run_id)
                # a resumed run keeps the start time it was given when it first ran
                self.recorder.set_run_state(
                    ctx.run_id,
                    RunState.RUNNING,
                    started_at=func.coalesce(PipelineRunRow.started_at, utcnow()),
                )
                execute(
                    ctx,
                    args,
                    backend=self.backend,
                    recorder=self.recorder,
                    packages=self.packages,
                    max_parallelism=self.max_parallelism,
                    on_engine=register,
                )
            except Exception:
                log.exception("run %s failed in the service", ctx.run_id)
                try:
                    self.recorder.finish_run(
                        ctx.run_id, RunState.FAILED, {}, "internal error; see the server log"
                    )
                except Exception:
                    log.exception("could not store the failure of run %s", ctx.run_id)
            finally:
                with self._lock:
                    self._engines.pop(ctx.run_id, None)
                    self._threads.pop(ctx.run_id, None)
                done.set()
                self._changed(ctx.run_id)

        def register(engine: Engine) -> None:
            with self._lock:
                self._engines[ctx.run_id] = engine
            if ctx.canceled.is_set():
                engine.cancel()

        thread = threading.Thread(target=work, name=f"ketch-run-{ctx.run_id[:8]}", daemon=True)
        with self._lock:
            self._threads[ctx.run_id] = thread
            self._done[ctx.run_id] = done
        thread.start()

    def _row_state(self, run_id: str) -> str:
        with self.database.session(readonly=True) as s:
            row = s.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id!r} not found")
            return row.state

    def cancel(self, run_id: str) -> bool:
        """Terminate a run: its running tasks are stopped and it ends CANCELED.

        Returns False when the run had already finished (nothing to cancel). A run
        executed by another live process (a ``ketch run``) is marked CANCELING and
        that process stops it; a run whose owner is gone ends CANCELED at once.
        """
        with self.database.session(readonly=True) as s:
            row = s.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id!r} not found")
            state, owner = row.state, row.owner
        if state in TERMINAL_RUN_STATES:
            return False
        with self._lock:
            engine = self._engines.get(run_id)
        if engine is not None:
            # only while it is in flight: an engine that ended as it was asked has
            # written the run's last state, which CANCELING must not replace
            self.recorder.set_run_state(run_id, RunState.CANCELING, only_from=owners.ACTIVE_STATES)
            engine.cancel()
        else:
            cancel_stored(self.recorder, run_id, owner)
        return True

    def busy(self, run_id: str) -> bool:
        """Whether this service still executes ``run_id`` (its thread has not ended)."""
        with self._lock:
            return run_id in self._threads

    def retry(self, run_id: str) -> None:
        """Run a FAILED or CANCELED run again; tasks that succeeded are not executed again."""
        with self.database.session(readonly=True) as s:
            row = s.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id!r} not found")
            if row.state not in (RunState.FAILED, RunState.CANCELED):
                raise Conflict(
                    f"run {run_id!r} is {row.state}; only FAILED or CANCELED runs can be retried"
                )
            ctx, args = _stored_context(row)
        with self._lock:
            if run_id in self._threads:
                raise Conflict(f"run {run_id!r} is still stopping; retry it in a moment")
        self.recorder.set_run_state(
            run_id, RunState.PENDING, error=None, finished_at=None, owner=str(self.owner)
        )
        self._launch(ctx, args, resume=True)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run ends (or timeout); return its stored state."""
        with self._lock:
            done = self._done.get(run_id)
        if done is not None:
            done.wait(timeout)
        return self._row_state(run_id)

    def active(self) -> list[str]:
        with self._lock:
            return list(self._engines)
