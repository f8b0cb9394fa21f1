"""The local compute backend: ProcessSpecs as processes on this machine.

Every process leads its own session and process group, so cancelling signals the
whole tree. Logs go to the spec's files (or files in a folder the backend owns).
Limits: ``memory_limit`` is enforced with ``RLIMIT_AS`` (address space, so a
limit must leave room for the interpreter's own mappings); ``cpu_limit`` is
enforced with a CFS quota in a control group of its own where this process may
create one (``cgroups.py``), and recorded only elsewhere: a CPU *rate* cannot be
expressed with rlimits, and pinning every task to the first ``ceil(cpu)`` cores
would stack concurrent tasks on the same cores.

No orphans: children get ``PR_SET_PDEATHSIG = SIGKILL`` (started from one
long-lived supervisor thread, because the signal follows the forking *thread*),
an orphan guard process SIGKILLs every started process group if this process
dies, and :meth:`LocalBackend.shutdown` (also run at exit) cancels everything.

A spec with ``python`` set runs in a warm fork server (see ``forkserver.py``)
when one can be had for its interpreter and preload list, and as the plain
``command`` otherwise.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ketch.core.backend import cgroups
from ketch.core.backend.forkclient import ForkServerClient, ForkServerUnavailable
from ketch.core.backend.handles import ForkedHandle, LocalHandle, SpawnedHandle, signal_group
from ketch.core.backend.host import Ledger, Request, ReservedPorts, host_gpus
from ketch.core.backend.logfiles import LogFiles
from ketch.core.backend.resources import parse_cpu, parse_memory
from ketch.core.backend.spec import Abilities, Backend, Placement, ProcessSpec, Resources
from ketch.core.backend.supervisor import OrphanGuard, Supervisor
from ketch.core.backend.warm import WarmInterpreters
from ketch.core.errors import BackendError, InvalidSpec

__all__ = ["LocalBackend", "child_setup", "parse_cpu", "parse_memory"]

log = logging.getLogger("ketch.core.backend")

_PR_SET_PDEATHSIG = 1
# Environment variables read when an interpreter starts: a fork server is shared
# only by tasks that agree on all of them.
_STARTUP_VARS = frozenset({"LANG", "LC_ALL", "LC_CTYPE"})

ServerKey = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]


def startup_signature(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of an environment that a running interpreter can no longer change."""
    return tuple(
        sorted((k, v) for k, v in env.items() if k.startswith("PYTHON") or k in _STARTUP_VARS)
    )


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    function.restype = ctypes.c_int
    return function


def child_setup(parent_pid: int, rlimit_as: int | None) -> Callable[[], None] | None:
    """The ``preexec_fn``: parent-death signal and address-space limit (the Ray
    backend's runners start their processes with it too)."""
    prctl = _prctl()
    if prctl is None and rlimit_as is None:
        return None

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
        if rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

    return setup


def _limits(resources: Resources) -> tuple[float | None, int | None]:
    """Validate every quantity; return the (cpu_limit, memory_limit) to apply."""
    for value, parse in (
        (resources.cpu_request, parse_cpu),
        (resources.memory_request, parse_memory),
    ):
        if value is not None:
            parse(value)
    cpu = parse_cpu(resources.cpu_limit) if resources.cpu_limit is not None else None
    memory = parse_memory(resources.memory_limit) if resources.memory_limit is not None else None
    if memory is not None and memory <= 0:
        raise InvalidSpec(
            f"invalid memory limit {resources.memory_limit!r}: must be more than 0",
            field="resources.memory_limit",
        )
    return cpu, memory


def _describe(command: Sequence[str]) -> str:
    text = shlex.join(command)
    return text if len(text) <= 300 else text[:297] + "..."


class LocalBackend(Backend):
    """Runs ProcessSpecs as local processes; Python tasks in warm fork servers.

    ``max_warm_interpreters``: how many fork servers (one per interpreter,
    preload list and start-up environment) stay warm; the least recently used
    is retired (it exits once its running tasks end). ``0`` disables the fork
    server: ``spec.python`` is then ignored and ``spec.command`` runs.
    """

    abilities = Abilities(exit_callbacks=True, prewarm=True)

    def __init__(
        self,
        max_warm_interpreters: int = 4,
        *,
        forkserver_ready_timeout: float = 120.0,
    ) -> None:
        if max_warm_interpreters < 0:
            raise ValueError("max_warm_interpreters must be >= 0")
        self.max_warm_interpreters = max_warm_interpreters
        self._ready_timeout = forkserver_ready_timeout
        self._supervisor = Supervisor()
        self._guard = OrphanGuard()
        self._lock = threading.Lock()
        self._closed = False
        self._running: set[LocalHandle] = set()
        self._logs = LogFiles("ketch-backend-")
        self._warm = WarmInterpreters(max_warm_interpreters)
        self._warned: set[tuple[str, ServerKey]] = set()
        self._ledger = Ledger()
        self._ports = ReservedPorts()
        self._gpus: int | None = None

    def __enter__(self) -> LocalBackend:
        return self

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called (nothing starts any more)."""
        return self._closed

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- public ------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> LocalHandle:
        """Start ``spec``; return its handle once the process runs.

        Raises :class:`InvalidSpec` for a bad quantity or an empty command and
        :class:`BackendError` when the process cannot be started.
        """
        if self._closed:
            raise BackendError(f"cannot start {spec.name!r}: the local backend is shut down")
        if not spec.command:
            raise InvalidSpec(f"{spec.name!r}: the command is empty", field="command")
        cpu, memory = _limits(spec.resources)
        if self.isolation is not None and spec.namespace is not None and spec.run_as is None:
            spec = self.isolation.isolate(spec)
        env = {**os.environ, **spec.env, **spec.secret_env}
        if spec.run_as is not None:
            env.update(spec.run_as.env())
        cwd = os.path.abspath(spec.cwd) if spec.cwd is not None else os.getcwd()
        if not os.path.isdir(cwd):
            raise BackendError(
                f"cannot start {spec.name!r}: working directory {cwd} does not exist "
                f"or is not a directory (command: {_describe(spec.command)})"
            )
        stdout, stderr = self._logs.paths(spec)
        if spec.python is not None and self.max_warm_interpreters > 0:
            entry = spec.python
            warmup = (entry.module, list(entry.warmup)) if entry.warmup is not None else None
            client = self._server(entry.python, tuple(entry.preload), env, warmup)
            if client is not None:
                handle = ForkedHandle(spec, stdout, stderr, cpu_limit=cpu, memory_limit=memory)
                handle.add_exit_callback(self._untrack)
                try:
                    client.fork(
                        handle,
                        module=entry.module,
                        argv=entry.argv,
                        env=env,
                        cwd=cwd,
                        stdout=str(stdout),
                        stderr=str(stderr),
                        rlimit_as=memory,
                        run_as=spec.run_as,
                    )
                except ForkServerUnavailable as exc:
                    key = self._key(entry.python, tuple(entry.preload), env)
                    self._warn_once(
                        "fork",
                        key,
                        "local backend: fork server for %s unavailable (%s); "
                        "running Python tasks as new processes",
                        entry.python,
                        exc,
                    )
                else:
                    self._track(handle)
                    return handle
        return self._spawn(spec, env, cwd, stdout, stderr, cpu, memory)

    def prewarm(
        self,
        python: str,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        warmup: tuple[str, list[str]] | None = None,
    ) -> Future[bool]:
        """Start the fork server for (``python``, ``preload``) in the background.

        ``env`` is what tasks will add to this process's environment (only the
        interpreter start-up variables in it select the server). The future
        resolves to whether the server is ready.
        """
        future: Future[bool] = Future()
        if self.max_warm_interpreters == 0 or self._closed:
            future.set_result(False)
            return future
        full_env = {**os.environ, **(env or {})}

        def run() -> None:
            try:
                ready = self._server(python, tuple(preload), full_env, warmup) is not None
                future.set_result(ready)
            except BaseException as exc:  # noqa: BLE001 - a thread's top level: handed to the caller, and logged
                log.warning(
                    "local backend: warming up %s failed: %s: %s", python, type(exc).__name__, exc
                )
                future.set_exception(exc)

        threading.Thread(target=run, name="ketch-prewarm", daemon=True).start()
        return future

    def running(self) -> list[LocalHandle]:
        """Handles of the processes still running."""
        with self._lock:
            return list(self._running)

    def shutdown(self, grace: float = 5.0) -> None:
        """Cancel everything still running (SIGTERM, SIGKILL after ``grace``), stop warm
        interpreters and the orphan guard, and remove the backend's own log folder."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._running)
        for handle in handles:
            handle.signal(signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0.0)
        for handle in handles:
            handle.wait(max(0.0, deadline - time.monotonic()))
        for handle in handles:
            if handle.poll() is None:
                handle.signal(signal.SIGKILL)
        for handle in handles:
            handle.wait(10.0)
        self._warm.close()
        self._guard.close()
        self._supervisor.close()
        self._logs.remove()

    # -- this machine's resources -------------------------------------------------

    def admit(self, key: Hashable, request: Request) -> tuple[bool, str]:
        """Admit ``key`` to this machine's CPUs and memory (see :class:`Ledger`)."""
        return self._ledger.try_admit(key, request)

    def release(self, key: Hashable) -> None:
        self._ledger.release(key)

    def reserve_port(self, preferred: int = 0, placement: Placement | None = None) -> int:
        """A free port on 127.0.0.1, locked against other servers on this machine too
        (see :class:`ReservedPorts`); every placement is this machine."""
        return self._ports.reserve(preferred)

    def release_ports(self, ports: Iterable[int]) -> None:
        self._ports.release(ports)

    def gpus(self) -> int:
        """This machine's NVIDIA GPUs (counted once)."""
        if self._gpus is None:
            self._gpus = host_gpus()
        return self._gpus

    # -- tracking ------------------------------------------------------------------

    def _track(self, handle: LocalHandle) -> None:
        with self._lock:
            if handle.poll() is None and handle.pid is not None:
                self._running.add(handle)
                self._guard.add(handle.pid)
        if handle.cpu_limit and handle.pid is not None:
            release = cgroups.limit_cpu(handle.pid, handle.cpu_limit)
            handle.cpu_enforced = release is not None
            if release is not None:
                handle.add_exit_callback(lambda _h: release())

    def _untrack(self, handle: LocalHandle) -> None:
        with self._lock:
            if handle in self._running:
                self._running.discard(handle)
                if handle.pid is not None:
                    self._guard.remove(handle.pid)

    # -- plain processes -------------------------------------------------------------

    def _spawn(
        self,
        spec: ProcessSpec,
        env: dict[str, str],
        cwd: str,
        stdout: Path,
        stderr: Path,
        cpu: float | None,
        memory: int | None,
    ) -> SpawnedHandle:
        handle = SpawnedHandle(spec, stdout, stderr, cpu_limit=cpu, memory_limit=memory)
        handle.add_exit_callback(self._untrack)
        preexec = child_setup(os.getpid(), memory)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        # setgroups([]), setgid, setuid in the child, before preexec (the parent-death
        # signal is cleared by a change of credentials: it is set after them)
        identity: dict[str, Any] = {}
        if spec.run_as is not None:
            identity = {
                "user": spec.run_as.uid,
                "group": spec.run_as.gid,
                "extra_groups": [],
                "umask": 0o077,
            }

        def start_on_supervisor() -> None:
            out = os.open(stdout, flags, 0o644)
            err = out if stderr == stdout else os.open(stderr, flags, 0o644)
            try:
                proc = subprocess.Popen(
                    spec.command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=preexec,
                    **identity,
                )
            finally:
                os.close(out)
                if err != out:
                    os.close(err)
            handle._set_pid(proc.pid)
            self._track(handle)

            def on_exit() -> None:
                code = proc.poll()
                if code is None:
                    code = proc.wait()
                signal_group(proc.pid, signal.SIGKILL)  # what is left of the group
                handle._set_exit(code)

            self._supervisor.watch(proc.pid, on_exit, proc.wait)

        try:
            self._supervisor.call(start_on_supervisor)
        except FileNotFoundError as exc:
            raise BackendError(
                f"cannot start {spec.name!r}: executable {spec.command[0]!r} not found "
                f"(command: {_describe(spec.command)})",
                hint="check the command and PATH",
            ) from exc
        except PermissionError as exc:
            who = f" as OS user {spec.run_as.user or spec.run_as.uid}" if spec.run_as else ""
            raise BackendError(
                f"cannot start {spec.name!r}: permission denied running {spec.command[0]!r}"
                f"{who} (command: {_describe(spec.command)})"
            ) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BackendError(
                f"cannot start {spec.name!r}: {reason} (command: {_describe(spec.command)})"
            ) from exc
        return handle

    # -- fork servers ------------------------------------------------------------------

    @staticmethod
    def _key(python: str, preload: tuple[str, ...], env: Mapping[str, str]) -> ServerKey:
        return (python, preload, startup_signature(env))

    def _warn_once(self, kind: str, key: ServerKey, message: str, *args: object) -> None:
        with self._lock:
            if (kind, key) in self._warned:
                return
            self._warned.add((kind, key))
        log.warning(message, *args)

    def _server(
        self,
        python: str,
        preload: tuple[str, ...],
        env: Mapping[str, str],
        warmup: tuple[str, list[str]] | None = None,
    ) -> ForkServerClient | None:
        """A ready fork server for this key, started if needed; None if none can be had."""
        key = self._key(python, preload, env)
        if self._closed:
            return None
        client, _ = self._warm.take(
            key,
            lambda: ForkServerClient(
                python,
                preload,
                env,
                self._logs.folder() / f"{self._logs.numbered('forkserver')}.log",
                self._supervisor,
                warmup=warmup,
            ),
        )
        if client is None:
            return None
        if not client.wait_ready(self._ready_timeout):
            self._warm.failed(key, client)
            self._warn_once(
                "start",
                key,
                "local backend: cannot start a fork server for %s (preload %s): %s; "
                "running Python tasks as new processes",
                python,
                list(preload),
                client.error,
            )
            return None
        if client.threads_at_ready > 1:
            self._warn_once(
                "threads",
                key,
                "local backend: preloading %s in %s started threads; "
                "forking such an interpreter is unsafe",
                list(preload),
                python,
            )
        return client
