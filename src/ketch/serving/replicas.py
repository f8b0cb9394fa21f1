"""A revision's replicas: ``ketch serve`` processes started through the compute
backend, watched until they say where they listen and answer ready, replaced when
they exit, scaled to what the autoscaler recommends, and stopped.

A replica prints ``Ketch model server listening on http://HOST:PORT`` once it
listens, on the address of the node it runs on (127.0.0.1 here, the node's on a Ray
cluster), where its router reaches it; it is ready when ``/v2/models/NAME/ready``
answers 200. A revision whose replica fails to start keeps the error and is tried
again after a backoff (:meth:`ketch.serving.running.Revision.fail`).

Each replica is a pod of its namespace's quota (the profile's ``kf-resource-quota``,
:mod:`ketch.core.quota`): it is charged what its component's container asks for
before it starts, under its InferenceService, and gives it back when it ends. A
replica that does not fit is not started: a ``FailedCreate`` Warning gives
Kubernetes' ``exceeded quota`` message (once, until it changes), and the next pass
asks again. Nothing of this runs per request: only as replicas start and stop.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx

from ketch.core import charges
from ketch.core.backend import Backend, ProcessHandle, ProcessSpec
from ketch.core.controller import Key
from ketch.core.store.resources import EventType, ResourceStore
from ketch.core.workloads.pods import Container
from ketch.serving.components import Scaling
from ketch.serving.pods import CONTAINER, KIND
from ketch.serving.router import ComponentRouter, RevisionStats
from ketch.serving.running import Replica, Revision, Service, log_dir
from ketch.serving.secret import ENV as SECRET_ENV
from ketch.serving.secret import HEADER as SECRET_HEADER
from ketch.serving.secret import new_secret

READY_LINE = re.compile(r"Ketch model server listening on http://([\w.-]+):(\d+)")
START_TIMEOUT = 300.0
STOP_GRACE = 3.0


class Recorder(Protocol):
    """Records an event on the InferenceService at ``key`` (and logs it)."""

    def __call__(self, key: Key, reason: str, message: str, type: EventType = "Normal") -> None:
        """Record ``reason``: ``message`` as a ``type`` event."""


class Replicas:
    """Runs the replicas of every revision of one controller's services."""

    def __init__(
        self,
        backend: Backend,
        record: Recorder,
        credentials: Callable[[str], dict[str, str]] | None = None,
        store: ResourceStore | None = None,
    ) -> None:
        self.backend = backend
        self.record = record
        # the store whose namespaces' quotas the replicas are charged to (none: not charged)
        self.store = store
        # a replica's namespace → its service-account token (a transformer calls its
        # predictor's router with it), once authentication is on
        self.credentials = credentials
        self._http = httpx.Client(timeout=3.0)

    def drive(
        self,
        svc: Service,
        rev: Revision,
        scale: Scaling,
        stats: RevisionStats | None,
        router: ComponentRouter,
    ) -> bool:
        """Check, replace and scale the revision's replicas; True while any is starting."""
        key = svc.key
        starting = False
        for replica in list(rev.replicas.values()):
            code = replica.handle.poll()
            if code is not None:
                rev.replicas.pop(replica.name)
                self._release(svc, replica.name)
                router.drop_replica(replica.name)
                svc.exited_logs[replica.name] = str(replica.log_path)
                if replica.ready:
                    self.record(
                        key,
                        "ReplicaExited",
                        f"replica {replica.name} exited with {code}; starting another",
                        "Warning",
                    )
                else:
                    tail = _tail(replica.log_path, replica.offset)
                    rev.fail(f"replica {replica.name} exited with {code} while starting: {tail}")
                    self.record(key, "ReplicaFailed", str(rev.failed), "Warning")
                continue
            if not replica.ready:
                starting = True
                self._check_ready(svc, rev, replica)
        if rev.failed is not None:  # keep the error; try again after a backoff
            retry = time.monotonic() >= rev.retry_at and not rev.replicas
            desired = 1 if retry else len(rev.replicas)
        else:
            desired = rev.autoscaler.desired(scale, stats, len(rev.replicas))
            if not rev.ever_ready:  # a new revision runs one replica until it has been ready
                desired = max(desired, 1)
        current = len(rev.replicas)
        if desired > current:
            started = 0
            while current + started < desired and self.start(svc, rev):
                started += 1
            if current and started:
                self.record(
                    key, "ScaledUp", f"{rev.name}: {current} -> {current + started} replicas"
                )
            starting = starting or bool(started)
        elif desired < current:
            self.record(key, "ScaledDown", f"{rev.name}: {current} -> {desired} replicas")
            ordered = sorted(rev.replicas.values(), key=lambda r: (r.ready, -r.started))
            for replica in ordered[: current - desired]:
                self.stop(svc, rev, replica)
        return starting

    def start(self, svc: Service, rev: Revision) -> bool:
        """Start one more replica of ``rev``; False when its namespace's quota has no
        room for it, or its model is a file some of the backend's nodes cannot read
        (nothing started)."""
        namespace, name = svc.key
        replica_name = f"{rev.name}-{rev.next_index}"
        unreachable = self._unreachable(rev.source.uri)
        if unreachable is not None:
            if rev.failed != unreachable:
                rev.fail(unreachable)
                self.record(svc.key, "ReplicaFailed", unreachable, "Warning")
            return False
        if not self._charge(svc, rev, replica_name):
            return False
        rev.next_index += 1
        folder = log_dir(namespace, name, svc.uid)
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / f"{replica_name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        source = rev.source
        secret = new_secret()  # only its router may call it
        command = [
            sys.executable,
            "-m",
            "ketch.cli.main",
            "serve",
            source.uri,
            "--name",
            name,
            "--port",
            "0",
            "--grpc-port",
            "-1",
        ]
        if source.format:
            command += ["--format", source.format]
        if source.model_class:
            command += ["--model-class", source.model_class]
        if rev.component == "transformer":
            command += ["--predictor-url", f"http://127.0.0.1:{svc.predictor.port}"]
        try:
            handle = self.backend.start(
                ProcessSpec(
                    name=f"inferenceservice {namespace}/{name} replica {replica_name}",
                    command=command,
                    env={"PYTHONUNBUFFERED": "1"},
                    secret_env=self._secret_env(namespace, secret),
                    stdout_path=log_path,
                    stderr_path=log_path,
                    namespace=namespace,
                )
            )
        except BaseException:
            self._release(svc, replica_name)
            raise
        replica = Replica(replica_name, rev.name, handle, log_path, offset, secret=secret)
        rev.replicas[replica_name] = replica
        router = svc.router_of(rev)
        if self.backend.abilities.exit_callbacks and router is not None:
            handle.add_exit_callback(_dropper(router, replica_name))
        self.record(svc.key, "ReplicaStarted", f"replica {replica_name} (pid {handle.pid})")
        return True

    def _unreachable(self, uri: str) -> str | None:
        """Why a replica might not read the model at ``uri``: a file of the control
        plane's disk that some of the backend's nodes do not mount (``None``: they all
        can, or it is fetched from elsewhere)."""
        if uri.startswith("file://"):
            path = Path(uri.removeprefix("file://"))
        elif uri.startswith("/"):
            path = Path(uri)
        else:
            return None
        problem = self.backend.unreachable(path)
        if problem is None:
            return None
        return (
            f"the model {uri} cannot be served: {problem}; or give a storageUri every node "
            "reaches (s3://, gs://, https://...)"
        )

    def _charge(self, svc: Service, rev: Revision, replica: str) -> bool:
        """Charge ``replica`` of ``rev`` to its namespace's quota; when it does not
        fit, say so with a ``FailedCreate`` Warning (once until the reason changes)."""
        if self.store is None:
            return True
        namespace, name = svc.key
        key = charges.owner_key(KIND, namespace, name)
        refused = charges.ledger_of(self.store).admit(
            self.store,
            key,
            namespace,
            [(replica, [Container(name=CONTAINER, resources=rev.resources)])],
        )
        if refused is None:
            rev.waiting = None
            return True
        if rev.waiting != refused:
            rev.waiting = refused
            self.record(svc.key, "FailedCreate", refused, "Warning")
        return False

    def _release(self, svc: Service, replica: str) -> None:
        """``replica`` ended (or never started): its charge goes back."""
        if self.store is not None:
            key = charges.owner_key(KIND, *svc.key)
            charges.ledger_of(self.store).release(key, [replica])

    def _secret_env(self, namespace: str, secret: str) -> dict[str, str]:
        """A replica's hidden environment: its secret, and its namespace's credentials."""
        found = self.credentials(namespace) if self.credentials else {}
        return {**found, SECRET_ENV: secret}

    def _check_ready(self, svc: Service, rev: Revision, replica: Replica) -> None:
        name = svc.key[1]
        if not replica.port:
            match = READY_LINE.search(_read(replica.log_path, replica.offset))
            if match is None:
                if time.monotonic() - replica.started > START_TIMEOUT:
                    rev.fail(f"replica {replica.name} did not start in {START_TIMEOUT:.0f}s")
                    self.stop(svc, rev, replica)
                return
            replica.host, replica.port = match.group(1), int(match.group(2))
        base = f"http://{replica.host}:{replica.port}"
        try:
            response = self._http.get(f"{base}/v2/models/{name}/ready", headers=_sent(replica))
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            replica.ready = True
            if not rev.ever_ready:  # counts as activity: scale-down windows start now
                rev.autoscaler.history.append((time.monotonic(), 1))
            rev.ever_ready = True
            rev.failed = None
            rev.attempts = 0
            self.record(svc.key, "ReplicaReady", f"replica {replica.name} serves {base}")
            return
        reason = ""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = self._http.get(f"{base}/v1/models/{name}", headers=_sent(replica))
            reason = str(answer.json().get("error") or "")
        if reason:
            rev.fail(f"model {name!r} failed to load: {reason}")
            self.record(svc.key, "LoadFailed", str(rev.failed), "Warning")
            self.stop(svc, rev, replica)

    def stop(self, svc: Service, rev: Revision, replica: Replica) -> None:
        """Take ``replica`` out of its routers and stop it (in the background)."""
        rev.replicas.pop(replica.name, None)
        self._release(svc, replica.name)
        for router in svc.routers():
            router.drop_replica(replica.name)
        svc.exited_logs[replica.name] = str(replica.log_path)
        thread = threading.Thread(
            target=replica.handle.cancel, kwargs={"grace": STOP_GRACE}, daemon=True
        )
        thread.start()
        svc.stopping = [t for t in svc.stopping if t.is_alive()] + [thread]

    def stop_all(self, svc: Service) -> None:
        """Stop every replica of ``svc`` (see :meth:`wait_stopped`)."""
        for rev in list(svc.revisions.values()):
            for replica in list(rev.replicas.values()):
                self.stop(svc, rev, replica)
        svc.revisions.clear()

    def wait_stopped(self, svc: Service) -> None:
        """Wait until the replicas of ``svc`` being stopped have ended."""
        for thread in svc.stopping:
            thread.join(STOP_GRACE + 5)

    def close(self) -> None:
        """Release the HTTP client the readiness checks use."""
        self._http.close()


def _sent(replica: Replica) -> dict[str, str]:
    """The headers a request of the controller's own to ``replica`` carries."""
    return {SECRET_HEADER: replica.secret}


def _dropper(router: ComponentRouter, replica: str) -> Callable[[ProcessHandle], None]:
    """An exit callback: take ``replica`` out of ``router`` the moment it ends."""

    def drop(_handle: ProcessHandle) -> None:
        router.drop_replica(replica)

    return drop


def _read(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, offset: int, lines: int = 5) -> str:
    text = _read(path, offset).strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"
