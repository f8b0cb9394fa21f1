"""The Notebook controller: one server process per Notebook, started through the
compute backend, stopped and started with ``kubeflow-resource-stopped``, restarted
when it exits (after the kubelet's crash-loop back-off) or when its pod is deleted,
culled when idle (:mod:`ketch.notebooks.culling`), and its status written as Kubeflow's
controller writes it, from its pod ``<name>-0`` (:mod:`ketch.notebooks.pods`):
``readyReplicas`` is 1 once the server answers on its path with its token (Jupyter's
``api/status``), ``containerState`` and the pod's conditions.

A notebook is charged to its namespace's quota (its container's requests and limits)
while its server runs. A server that is not installed (RStudio, code-server, or
JupyterLab itself) is not started: the pod waits, unschedulable, with the reason, and
a Warning event says what to install.

What runs lives in this process: :meth:`stop` (the server stops) stops every server;
after a restart, each notebook that is not stopped starts again (with a new token),
and whatever pod an earlier run left is replaced. Deleting a notebook stops its server
and keeps its files.

Each time a server starts, its pod gets the PodDefaults that select it, as Kubeflow's
admission webhook gives them to a new pod (:mod:`ketch.notebooks.admission`), and
its environment is read as the kubelet reads it (:mod:`ketch.notebooks.environment`).
A pod the PodDefaults conflict on is not started: it waits (``PodDefaultConflict``)
and a ``FailedCreate`` event names the PodDefaults and the conflict. A Secret or a
ConfigMap the environment needs and cannot find keeps it waiting
(``CreateContainerConfigError``, with a ``Failed`` event naming it). Either is looked at
again when a PodDefault, Secret or ConfigMap of its namespace changes, and every few
seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from ketch.core import charges, config
from ketch.core.access import workload_env
from ketch.core.backend import Backend
from ketch.core.controller import Events, Key, Result, StatusController
from ketch.core.credentials import TOKEN_ENV
from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound
from ketch.core.resource import Resource
from ketch.core.store.pods import LogRef, Terminated, log_size, new_uid
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import utcnow
from ketch.core.workloads.backoff import Backoff, describe
from ketch.core.workloads.containers import IMAGE_REASON, image_notice
from ketch.notebooks import culling
from ketch.notebooks.admission import Applied, apply_to_notebook
from ketch.notebooks.environment import REASON as CONFIG_ERROR
from ketch.notebooks.environment import ConfigMissing, Environment, PodFields, resolve
from ketch.notebooks.launch import missing_program, placed, ready_path, server_process
from ketch.notebooks.poddefaults import KIND as PODDEFAULT
from ketch.notebooks.poddefaults import PodDefaultRefused
from ketch.notebooks.pods import (
    NotebookPods,
    PodView,
    notebook_pod,
    notebook_status,
    pod_annotations,
    pod_labels,
    pod_name,
)
from ketch.notebooks.running import NotebookServer, new_token, upstreams_of
from ketch.notebooks.settings import Culling
from ketch.notebooks.spec import (
    KIND,
    STOPPED,
    NotebookContainer,
    NotebookSpec,
    ServerType,
    main_container,
    parse_spec,
    server_type,
)
from ketch.notebooks.workspace import plan, prepare

log = logging.getLogger("ketch.notebooks.controller")

START_TIMEOUT = 180.0
STOP_GRACE = 10.0
#: how often a running notebook is looked at when nothing wakes its controller
RESYNC = 10.0
#: how often a notebook waiting for its PodDefaults, Secrets or ConfigMaps is looked at
#: (besides when one of them changes)
RECHECK = 5.0
#: why a pod its PodDefaults conflict on waits
CONFLICT = "PodDefaultConflict"


def controller_factory(store: ResourceStore, backend: Backend) -> NotebookController:
    return NotebookController(store, backend)


@dataclass
class Book:
    """What the controller remembers of one notebook between passes."""

    uid: str
    pod_uid: str = ""
    since: datetime = field(default_factory=utcnow)
    restarts: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last: Terminated | None = None
    #: the messages of Warning events already said (said once until they change)
    said: set[str] = field(default_factory=set)
    #: the pod with its PodDefaults, as its server last started (or tried to)
    applied: Applied | None = None
    #: waiting for a PodDefault, Secret or ConfigMap of its namespace to change
    waiting: bool = False


class NotebookController(StatusController):
    kind = KIND
    workers = 4
    watches = (PODDEFAULT, "Secret", "ConfigMap")

    def __init__(
        self, store: ResourceStore, backend: Backend, culling_settings: Culling | None = None
    ) -> None:
        super().__init__(store)
        self.backend = backend
        self.culling = culling_settings or Culling.from_env()
        self.backoff = Backoff.from_env()
        self.upstreams = upstreams_of(store.database)
        self.pods = NotebookPods(store)
        self.servers: dict[Key, NotebookServer] = {}
        self.books: dict[Key, Book] = {}
        self._lock = threading.Lock()
        self._stopping: list[threading.Thread] = []
        self._http = httpx.Client(timeout=5.0, trust_env=False)

    # -- the loop ------------------------------------------------------------------

    def tracked_keys(self) -> list[Key]:
        with self._lock:
            return list(self.servers)

    def related(self, resource: Resource) -> list[Key]:
        """The notebooks of the namespace of a changed PodDefault, Secret or ConfigMap
        that wait for one."""
        namespace = resource.metadata.namespace
        with self._lock:
            return [k for k, b in self.books.items() if k[0] == namespace and b.waiting]

    def replaced(self, key: Key, uid: str | None) -> None:
        with self._lock:
            book = self.books.get(key)
        if book is not None and book.uid != (uid or ""):
            self.gone(key)  # deleted and made again under its name
        with self._lock:
            self.books.setdefault(key, Book(uid or ""))

    def gone(self, key: Key) -> None:
        self._stop(key)
        with self._lock:
            self.books.pop(key, None)
        self.pods.forget(*key)
        charges.ledger_of(self.store).release(charges.owner_key(KIND, *key))

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        namespace, name = key
        with self._lock:
            book = self.books[key]
        try:
            spec = parse_spec(resource.spec)
            _index, container = main_container(name, spec)
        except InvalidSpec as exc:  # stored before Ketch checked it: refused now
            self._stop(key)
            self.pods.remove(namespace, name)
            self._warn(book, events, "InvalidSpec", str(exc))
            status.clear()
            status.update(notebook_status(None, False))
            return None
        annotations = dict(resource.metadata.annotations)
        if STOPPED in annotations:
            if self._stop(key):
                events.append(("Stopped", f"{STOPPED} is set: the server was stopped", "Normal"))
            book.pod_uid, book.failures, book.retry_at, book.last = "", 0, 0.0, None
            book.applied, book.waiting = None, False
            self.pods.remove(namespace, name)
            self._release(key)
            if self.culling.enabled and culling.clear(annotations):
                self._annotate(resource, annotations)
            status.clear()
            status.update(notebook_status(None, False))
            return None
        kind = server_type(resource, container)
        view, requeue = self._drive(key, resource, spec, container, kind, book, events)
        charges.ledger_of(self.store).settle(charges.owner_key(KIND, namespace, name))
        with self._lock:
            server = self.servers.get(key)
        if not book.pod_uid:
            book.pod_uid, book.since = new_uid(), utcnow()
        if book.applied is not None:
            container = book.applied.container
            view.labels, view.annotations = book.applied.labels, book.applied.annotations
        record = notebook_pod(resource, container, view, book.pod_uid, book.since)
        self.pods.put(record)
        new = notebook_status(record, server is not None and server.ready)
        status.clear()
        status.update(new)
        if self.culling.enabled:
            requeue = min(requeue, self._cull(resource, annotations, server, events))
        return Result(requeue_after=requeue)

    # -- running the server ----------------------------------------------------------

    def _drive(
        self,
        key: Key,
        resource: Resource,
        spec: NotebookSpec,
        container: NotebookContainer,
        kind: ServerType,
        book: Book,
        events: Events,
    ) -> tuple[PodView, float]:
        """Start, check and restart the server; what its pod shows, and when to look
        again."""
        with self._lock:
            server = self.servers.get(key)
        if server is not None and self.pods.deletion_requested(resource):
            self._stop(key)
            events.append(("Killing", f"pod {pod_name(key[1])} was deleted; restarting", "Normal"))
            book.pod_uid, book.failures, book.retry_at = "", 0, 0.0
            book.applied = None
            server = None
        if server is not None and server.handle.poll() is not None:
            self._exited(key, server, book, events)
            server = None
        view = PodView(restarts=book.restarts, last=book.last)
        if server is None:
            missing = missing_program(kind)
            if missing is not None:
                self._warn(book, events, "ServerNotInstalled", missing)
                view.pod_reason, view.pod_message = "Unschedulable", missing
                view.reason, view.message = "ServerNotInstalled", missing
                return view, 30.0
            wait = book.retry_at - time.monotonic()
            if wait > 0:
                view.reason = "CrashLoopBackOff"
                view.message = (
                    f"back-off {describe(self.backoff.delay(book.failures))} restarting "
                    f"failed container={container.name} pod={pod_name(key[1])}"
                )
                return view, wait
            prepared = self._prepare(key, resource, book, events, view)
            if prepared is None:
                return view, RECHECK
            applied, environment = prepared
            refused = charges.ledger_of(self.store).admit(
                self.store,
                charges.owner_key(KIND, *key),
                key[0],
                [(pod_name(key[1]), [applied.container])],
            )
            if refused is not None:
                self._warn(book, events, "FailedCreate", refused)
                view.reason, view.message = "ExceededQuota", refused
                return view, 2.0
            try:
                server = self._start(key, resource, applied, environment, kind, events)
            except (KetchError, OSError) as exc:
                self._release(key)
                book.failures += 1
                book.retry_at = time.monotonic() + self.backoff.delay(book.failures)
                self._warn(book, events, "FailedStart", f"the server did not start: {exc}")
                view.reason, view.message = "StartError", str(exc)
                return view, max(0.5, book.retry_at - time.monotonic())
        view.process, view.port = server.handle.spec, server.upstream.port
        view.node, view.ip = server.handle.node, server.upstream.host
        view.log = LogRef(str(server.log), server.offset, None)
        view.phase, view.state, view.started_at = "Running", "running", server.started_wall
        if not server.ready:
            self._check_ready(key, server, kind, events)
        if not server.ready and time.monotonic() - server.started > START_TIMEOUT:
            events.append(
                (
                    "Unhealthy",
                    f"the server did not answer in {START_TIMEOUT:.0f}s; restarting it "
                    f"(log: {server.log})",
                    "Warning",
                )
            )
            self._stop(key)
            book.failures += 1
            book.retry_at = time.monotonic() + self.backoff.delay(book.failures)
            return PodView(restarts=book.restarts, last=book.last), 0.1
        view.ready = server.ready
        if not server.ready:
            return view, 0.1
        return view, RESYNC

    def _prepare(
        self, key: Key, resource: Resource, book: Book, events: Events, view: PodView
    ) -> tuple[Applied, Environment] | None:
        """The pod with its PodDefaults and its container's environment, as a new pod
        gets them; ``None`` (``view`` says why) when the server cannot start yet."""
        namespace, name = key
        book.waiting = True
        if not book.pod_uid:  # the pod is made now
            book.pod_uid, book.since = new_uid(), utcnow()
        defaults = list(self.store.list(PODDEFAULT, namespace))
        try:
            applied = apply_to_notebook(resource, defaults)
        except PodDefaultRefused as exc:
            book.applied = None
            message = f"create Pod {pod_name(name)} failed: {exc}"
            self._warn(book, events, "FailedCreate", message)
            view.reason, view.message = CONFLICT, str(exc)
            return None
        if applied.names and (book.applied is None or book.applied.names != applied.names):
            notes = "".join(f"; {note}" for note in applied.notes)
            events.append(
                (
                    "PodDefaultsApplied",
                    f"pod {pod_name(name)} has PodDefaults {', '.join(applied.names)}{notes}",
                    "Normal",
                )
            )
        book.applied = applied
        labels = {**pod_labels(resource), **applied.labels}
        annotations = {**pod_annotations(resource), **applied.annotations}
        fields = PodFields(
            name=pod_name(name),
            namespace=namespace,
            uid=book.pod_uid,
            labels=labels,
            annotations=annotations,
            service_account=applied.spec.template.spec.serviceAccountName or "default",
        )
        shown = applied.container.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            environment = resolve(shown, fields, self._read(namespace))
        except ConfigMissing as exc:
            self._warn(book, events, "Failed", f"Error: {exc}")
            view.reason, view.message = CONFIG_ERROR, str(exc)
            return None
        for note in environment.notes:
            self._warn(book, events, "EnvironmentNotSet", note)
        book.waiting = False
        return applied, environment

    def _read(self, namespace: str) -> Callable[[str, str], Resource | None]:
        def read(kind: str, name: str) -> Resource | None:
            try:
                return self.store.get(kind, namespace, name)
            except NotFound:
                return None

        return read

    def _start(
        self,
        key: Key,
        resource: Resource,
        applied: Applied,
        environment: Environment,
        kind: ServerType,
        events: Events,
    ) -> NotebookServer:
        namespace, name = key
        container = applied.container
        layout = plan(config.ketch_home(), namespace, name, applied.spec, container)
        for folder in (layout.root, layout.state):  # its workspace, Jupyter's own files
            problem = self.backend.unreachable(folder)
            if problem is not None:
                raise KetchError(f"the notebook's folder {folder} is out of reach: {problem}")
        for note in [*layout.notes, *prepare(layout)]:
            events.append(("VolumeNotMounted", note, "Warning"))
        secret_env = workload_env(self.store.database, namespace)
        if not applied.automount_token:
            secret_env.pop(TOKEN_ENV, None)
        port = self.backend.reserve_port()
        process, upstream = server_process(
            kind=kind,
            namespace=namespace,
            name=name,
            container=container,
            layout=layout,
            port=port,
            token=new_token(),
            secret_env=secret_env,
            environment=environment,
        )
        offset = log_size(layout.log)
        try:
            handle = self.backend.start(process)
        except BaseException:
            self.backend.release_ports([port])
            raise
        upstream = placed(upstream, handle)  # where it listens: its node's address
        server = NotebookServer(
            key, resource.metadata.uid or "", handle, upstream, layout.log, offset
        )
        with self._lock:
            self.servers[key] = server
        self.upstreams.set(key, upstream)
        if self.backend.abilities.exit_callbacks:
            handle.add_exit_callback(lambda _handle: self.enqueue(key))
        events.append(
            (
                "Started",
                f"started {kind.value} for {upstream.prefix} (pid {handle.pid}, "
                f"root {layout.root}, log {layout.log})",
                "Normal",
            )
        )
        events.append((IMAGE_REASON, image_notice([container.image]), "Normal"))
        return server

    def _check_ready(
        self, key: Key, server: NotebookServer, kind: ServerType, events: Events
    ) -> None:
        upstream = server.upstream
        url = f"http://{upstream.host}:{upstream.port}{ready_path(kind, upstream)}"
        try:
            response = self._http.get(url, headers=upstream.auth_headers(), timeout=2.0)
        except httpx.HTTPError:
            return
        if response.status_code == 200 or (
            kind is ServerType.RSTUDIO and response.status_code < 500
        ):
            server.ready = True
            took = time.monotonic() - server.started
            events.append(
                ("Ready", f"{kind.value} answers at {upstream.prefix} ({took:.1f}s)", "Normal")
            )

    def _exited(self, key: Key, server: NotebookServer, book: Book, events: Events) -> None:
        code = server.handle.poll() or 0
        ran = time.monotonic() - server.started
        book.last = Terminated(code, server.started_wall, utcnow())
        book.restarts += 1
        book.failures = self.backoff.failures_after(book.failures, ran)
        delay = self.backoff.delay(book.failures)
        book.retry_at = time.monotonic() + delay
        self._stop(key)
        events.append(
            (
                "BackOff",
                f"the server exited with code {code}; starting it again in {describe(delay)} "
                f"(log: {server.log}): {_tail(server)}",
                "Warning",
            )
        )

    def _stop(self, key: Key) -> bool:
        """Stop the notebook's server (in the background); whether one ran."""
        with self._lock:
            server = self.servers.pop(key, None)
        self.upstreams.drop(key)
        if server is None:
            return False

        def stop() -> None:
            try:
                server.handle.cancel(grace=STOP_GRACE)
                server.handle.wait(STOP_GRACE + 5)
            finally:
                self.backend.release_ports([server.upstream.port])

        thread = threading.Thread(target=stop, name=f"ketch-notebook-stop-{key[1]}", daemon=True)
        thread.start()
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()] + [thread]
        return True

    def _release(self, key: Key) -> None:
        charges.ledger_of(self.store).release(charges.owner_key(KIND, *key))

    def _warn(self, book: Book, events: Events, reason: str, message: str) -> None:
        """A Warning event, said once until its message changes."""
        said = f"{reason}: {message}"
        if said in book.said:
            return
        book.said = {s for s in book.said if not s.startswith(f"{reason}: ")} | {said}
        events.append((reason, message, "Warning"))

    # -- culling ---------------------------------------------------------------------

    def _cull(
        self,
        resource: Resource,
        annotations: dict[str, str],
        server: NotebookServer | None,
        events: Events,
    ) -> float:
        """Kubeflow's culler's pass over a notebook that is not stopped; when to look
        again."""
        before = dict(annotations)
        moment = culling.now()
        if server is None:  # no pod: nothing to cull
            if culling.clear(annotations):
                self._annotate(resource, annotations)
            return RESYNC
        culled = culling.cull(annotations, self.culling, lambda: self._kernels(server), moment)
        if annotations != before and not self._annotate(resource, annotations):
            return 0.5
        if culled:
            idle = self.culling.idle_seconds / 60
            events.append(
                (
                    "Culled",
                    f"no kernel activity since {annotations.get(culling.LAST_ACTIVITY)} "
                    f"(CULL_IDLE_TIME {idle:g} minutes): {STOPPED} set",
                    "Normal",
                )
            )
            return 0.0
        return max(0.05, culling.due(annotations, self.culling, culling.now()))

    def _kernels(self, server: NotebookServer) -> list[dict[str, Any]] | None:
        upstream = server.upstream
        url = f"http://{upstream.host}:{upstream.port}{upstream.prefix}api/kernels"
        try:
            response = self._http.get(url, headers=upstream.auth_headers())
            found = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return [k for k in found if isinstance(k, dict)] if isinstance(found, list) else None

    def _annotate(self, resource: Resource, annotations: dict[str, str]) -> bool:
        """Write the notebook's ``annotations``; False when it changed meanwhile (the
        next pass tries again)."""
        updated = resource.model_copy(deep=True)
        updated.metadata.annotations = dict(annotations)
        try:
            self.store.apply_outcome(updated, expected_version=resource.metadata.resourceVersion)
        except (Conflict, NotFound):
            return False
        return True

    # -- the end ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every server this controller started (the server is stopping)."""
        with self._lock:
            keys = list(self.servers)
        for key in keys:
            self._stop(key)
        with self._lock:
            stopping = list(self._stopping)
        for thread in stopping:
            thread.join(STOP_GRACE + 10)
        with contextlib.suppress(Exception):
            self._http.close()


def _tail(server: NotebookServer, lines: int = 3) -> str:
    try:
        with server.log.open("rb") as handle:
            handle.seek(server.offset)
            text = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(text[-lines:]) or "(no output)"
