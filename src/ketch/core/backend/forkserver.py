"""A pre-warmed Python interpreter that forks one child per task (and the orphan guard).

This file is self-contained (standard library only, Python >= 3.9) because it is
run *by path* with whatever interpreter a task asks for, which may be another
virtualenv that has ``kfp`` but not ``ketch``::

    <python> forkserver.py serve <parent-pid> <preload-json-list>
    <python> -I -S forkserver.py guard

``serve`` imports the ``preload`` modules once, then for each request hands
out a child (forked ahead of time, so a request does not wait for a fork) that
becomes ``<python> -m <module> <argv...>``: its own session and process
group, stdout/stderr appended to the requested log files, the requested *full*
environment, cwd and address-space limit, the requested OS identity (taken after
the logs are opened and the cwd entered), the module run as ``__main__`` with
:func:`runpy.run_module`, and the exit code the interpreter would give.

The server is single-threaded (forking a multi-threaded process is unsafe): one
selector loop over its request channel (a socket passed as stdin) and a
signal wakeup pipe (SIGCHLD: reap with ``waitpid(-1, WNOHANG)``).

Protocol, one JSON object per line::

    parent -> server  {"op": "fork", "id": 1, "module": "m", "argv": [], "env": {...},
                       "cwd": "/dir", "stdout": "/x.out", "stderr": "/x.err",
                       "rlimit_as": null, "run_as": null | {"uid": 1001, "gid": 1001}}
                      {"op": "retire"}       (fork no more; exit when no child is left)
    server -> parent  {"event": "ready", "pid": 123, "threads": 1}
                      {"event": "preload_failed", "message": "..."}
                      {"id": 1, "event": "started", "pid": 124}
                      {"id": 1, "event": "error", "message": "..."}
                      {"id": 1, "event": "exit", "pid": 124, "code": 0}

When the request channel closes (the parent died) or the server gets SIGTERM /
SIGHUP (its own parent-death signal), it SIGKILLs every child's process group,
reaps them and exits. When a child's leader exits, the server also SIGKILLs
what is left of its process group, as a container runtime does.

``guard`` is the orphan guard of one backend: it reads ``+PGID`` / ``-PGID`` lines
on stdin and, when stdin reaches EOF (the backend's process ended, however it
ended), SIGKILLs every process group still registered.

Caveat: modules preloaded here are imported once, in the server's environment,
and shared by every child. State they computed at import time from the
environment (a config read from ``os.environ``, a cached path, a seeded RNG, a
started thread) is not recomputed for the child's environment. Interpreter
start-up settings (``PYTHON*`` variables, locale) are part of the backend's
server key, so they always match; the hash seed is the server's for all of its
children.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1
_HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


_prctl: Any = None


def set_parent_death_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` on Linux; False where it is not available."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _prctl is None:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        return int(_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _noop_handler(signum: int, frame: object) -> None:
    """Signals are read from the wakeup pipe; the handler only has to exist."""


# --------------------------------------------------------------------------- child


_noted: set[str] = set()


def _note(what: str, exc: BaseException, fd: int = 2) -> None:
    """Report ``exc`` (its type and message) straight to ``fd``, not through
    ``sys.stderr``: for errors met where that may be what failed. Once each."""
    import traceback

    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    line = f"ketch fork server: {what}: {text}\n"
    if line in _noted:
        return
    _noted.add(line)
    try:
        _write_all(fd, line.encode(errors="replace"))
    except OSError:
        pass


def _exit_code_of(code: object) -> int:
    """SystemExit.code as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception as exc:  # noqa: BLE001 - the code's __str__ and sys.stderr are the task's objects; the status stays 1
        _note("cannot print the exit code", exc)
    return 1


def _flush_std() -> bool:
    ok = True
    flushed: list[object] = []
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None or any(stream is done for done in flushed):
            continue
        flushed.append(stream)
        try:
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - the streams may be the task's objects; like the interpreter: reported, status 120
            ok = False
            _note("cannot flush the output", exc)
    return ok


def _finalize() -> None:
    """What interpreter shutdown does before exit: join threads, run atexit."""
    threading = sys.modules.get("threading")
    if threading is not None:
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except Exception as exc:  # noqa: BLE001 - joins the task's threads; like the interpreter: reported, exit goes on
                _note("joining the threads failed", exc)
    import atexit

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is not None:
        run_exitfuncs()


def _report(exc: BaseException) -> None:
    """Print an uncaught exception through ``sys.excepthook``, without this file's frames."""
    own = _run_module.__code__.co_filename
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == own:
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def _innermost_module(tb: Any) -> str | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame.f_globals.get("__name__")


def _run_module(module: str, argv: list[str], cwd: str) -> int:
    """Run ``module`` as ``python -m module argv...`` would; return the exit status."""
    import importlib
    import runpy

    if not getattr(sys.flags, "safe_path", False):
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    sys.argv = [module, *argv]
    interrupted = False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code_of(exc.code)
    except ImportError as exc:
        if _innermost_module(exc.__traceback__) == "runpy":
            # runpy could not find the module: print what `python -m` prints.
            sys.stderr.write(f"{sys.executable}: {exc}\n")
        else:
            _report(exc)
        code = 1
    except KeyboardInterrupt as exc:
        _report(exc)
        code, interrupted = 1, True
    except BaseException as exc:  # noqa: BLE001 - the task's code may raise anything; printed as python -m prints it
        _report(exc)
        code = 1
    try:
        _finalize()
    except SystemExit as exc:
        code = _exit_code_of(exc.code)
    except BaseException as exc:  # noqa: BLE001 - atexit handlers are the task's code; reported, the status stands
        _note("interpreter shutdown failed", exc)
    if not _flush_std() and code == 0:
        code = 120
    if interrupted:
        # Like the interpreter: an uncaught KeyboardInterrupt ends the process by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _replace_environ(env: dict[str, str]) -> None:
    """Make ``os.environ`` (and the C environment) exactly ``env``, changing only what differs."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good: no supplementary groups, then the group, then
    the user (the other order would leave no right to change the group), umask 077.
    A change of credentials clears the parent-death signal: it is set again."""
    parent = os.getppid()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o077)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise PermissionError(f"could not become uid {uid} gid {gid}")
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _become_child(server: _Server) -> None:
    """First steps of every forked child: own session, parent-death signal, clean signals."""
    os.setsid()
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != server.pid:
        os._exit(1)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server.close_in_child()


def _run_request(request: dict[str, Any]) -> None:
    """Turn this child into the requested task; never returns."""
    code = 1
    try:
        out = _open_log(request["stdout"])
        err = out if request["stderr"] == request["stdout"] else _open_log(request["stderr"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in {null, out, err}:
            os.close(fd)
        limit = request.get("rlimit_as")
        if limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
        cwd = request["cwd"]
        os.chdir(cwd)
        identity = request.get("run_as")
        if identity is not None:
            _drop_privileges(int(identity["uid"]), int(identity["gid"]))
        _replace_environ(request["env"])
        code = _run_module(request["module"], list(request["argv"]), cwd)
    except BaseException as exc:  # noqa: BLE001 - the child must end in os._exit, never unwind into the server
        try:
            import traceback

            sys.stderr.write("ketch fork server: cannot start the task:\n")
            traceback.print_exc()
        except BaseException:  # noqa: BLE001 - sys.stderr may be what failed: reported on fd 2 instead
            _note("cannot start the task", exc)
        code = 1
    finally:
        try:
            _flush_std()
        finally:
            os._exit(code)


def _child(server: _Server, request: dict[str, Any]) -> None:
    """A child forked for ``request``; never returns."""
    try:
        _become_child(server)
    except BaseException as exc:  # noqa: BLE001 - the child must end in os._exit, never unwind into the server
        try:
            _note("cannot set up the task's process", exc)
        finally:
            os._exit(1)
    _run_request(request)


def _spare(server: _Server, requests: int) -> None:
    """A child forked ahead of time: waits for its request on a pipe; never returns."""
    try:
        _become_child(server)
        chunks = []
        while True:
            chunk = os.read(requests, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(requests)
        if not chunks:
            os._exit(0)  # not needed after all
        request = json.loads(b"".join(chunks))
    except BaseException as exc:  # noqa: BLE001 - the child must end in os._exit, never unwind into the server
        try:
            _note("cannot set up the task's process", exc)
        finally:
            os._exit(1)
    _run_request(request)


# --------------------------------------------------------------------------- server


class _Server:
    """The server's state. Forking is done ahead: one *spare* child, already forked
    and in its own session, waits for the next request on a pipe, so a request
    costs a pipe write instead of a fork (which grows with the preloaded heap)."""

    def __init__(self, channel: int, wakeup: int, wakeup_w: int, selector: Any) -> None:
        self.pid = os.getpid()
        self.channel = channel
        self.wakeup = wakeup
        self.wakeup_w = wakeup_w
        self.selector = selector
        self.children: dict[int, int] = {}  # pid -> request id
        self.spare: tuple[int, int] | None = None  # (pid, request pipe write end)
        self.retiring = False
        self.channel_open = True

    def close_in_child(self) -> None:
        """A child must not hold the server's channel: the parent would miss its EOF."""
        self.selector.close()
        for fd in (self.channel, self.wakeup, self.wakeup_w):
            os.close(fd)
        if self.spare is not None:
            os.close(self.spare[1])

    def send(self, message: dict[str, Any]) -> None:
        if not self.channel_open:
            return
        try:
            _write_all(self.channel, (json.dumps(message) + "\n").encode())
        except OSError:
            self.channel_open = False

    def fork_spare(self) -> None:
        if self.spare is not None or self.retiring:
            return
        _flush_std()
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:
            os.close(write_end)
            _spare(self, read_end)
        os.close(read_end)
        self.spare = (pid, write_end)

    def drop_spare(self) -> None:
        if self.spare is not None:
            pid, write_end = self.spare
            self.spare = None
            os.close(write_end)  # EOF: the spare exits
            _killpg(pid, signal.SIGKILL)

    def fork(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        if self.retiring:
            self.send({"id": rid, "event": "error", "message": "fork server is retiring"})
            return
        pid = 0
        if self.spare is not None:
            pid, write_end = self.spare
            self.spare = None
            try:
                _write_all(write_end, json.dumps(request).encode())
            except OSError:
                _killpg(pid, signal.SIGKILL)
                pid = 0
            finally:
                os.close(write_end)
        if not pid:
            _flush_std()
            try:
                pid = os.fork()
            except OSError as exc:
                self.send({"id": rid, "event": "error", "message": f"fork failed: {exc}"})
                return
            if pid == 0:
                _child(self, request)
        self.children[pid] = int(rid) if rid is not None else -1
        self.send({"id": rid, "event": "started", "pid": pid})

    def reap(self, block: bool = False) -> None:
        while True:
            if block and not self.children:
                return
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if self.spare is not None and self.spare[0] == pid:
                os.close(self.spare[1])
                self.spare = None
            rid = self.children.pop(pid, None)
            # The leader is gone: kill what is left of its group (as a container ends).
            _killpg(pid, signal.SIGKILL)
            if rid is not None:
                code = os.waitstatus_to_exitcode(status)
                self.send({"id": rid, "event": "exit", "pid": pid, "code": code})

    def kill_all(self) -> None:
        self.drop_spare()
        for pid in list(self.children):
            _killpg(pid, signal.SIGKILL)
        self.reap(block=True)

    def handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            return
        op = request.get("op")
        if op == "fork":
            self.fork(request)
        elif op == "retire":
            self.retiring = True
            self.drop_spare()


def _warm_up(module: str, argv: list[str]) -> None:
    """Run ``module`` once in the server, output discarded, state put back after.

    What a task's first run fills lazily (regex and gettext caches, argparse,
    logging, imports done inside functions) is then shared by every child.
    """
    import logging
    import runpy

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    _flush_std()
    saved_fds = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = [module, *argv]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except BaseException as exc:  # noqa: BLE001 - the warm-up runs user code and is only an optimisation; reported
            if not isinstance(exc, SystemExit) or exc.code:
                _note("the warm-up run failed (tasks are not affected)", exc, saved_fds[1])
        _flush_std()
    finally:
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (*saved_fds, null):
            os.close(fd)
        sys.argv, sys.path[:] = saved_argv, saved_path
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)  # modules the run imported stay: that is the point


def serve(parent_pid: int, preload: list[str], warmup: list[Any] | None = None) -> int:
    # Running by path put this file's folder first on sys.path; a task must not see it.
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]
    channel = os.dup(0)  # non-inheritable; fd 0 becomes /dev/null
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:
        return 0

    def send(message: dict[str, Any]) -> None:
        try:
            _write_all(channel, (json.dumps(message) + "\n").encode())
        except OSError:
            pass

    try:
        import importlib

        for name in preload:
            importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - preloaded modules are user code; reported to the client as preload_failed
        import traceback

        send({"event": "preload_failed", "message": traceback.format_exc()})
        return 1
    # What the server and every child need, imported once here (``python -m`` has
    # runpy and importlib loaded too).
    import atexit  # noqa: F401
    import gc
    import importlib.util  # noqa: F401
    import resource  # noqa: F401
    import runpy  # noqa: F401
    import selectors
    import threading
    import traceback  # noqa: F401

    threads = threading.active_count()
    if threads > 1:
        sys.stderr.write(
            f"ketch fork server: warning: preloading {preload} started {threads - 1} "
            "thread(s); forking a multi-threaded process is unsafe\n"
        )
    compile("pass", "<warm-up>", "exec")  # the first compile() in a process is slow
    if warmup:
        _warm_up(str(warmup[0]), [str(a) for a in warmup[1]])
    _flush_std()
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()  # keep the preloaded heap shared with the children (copy-on-write)

    wakeup, wakeup_w = os.pipe()
    os.set_blocking(wakeup, False)
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    for sig in _HANDLED_SIGNALS:
        signal.signal(sig, _noop_handler)

    selector = selectors.DefaultSelector()
    server = _Server(channel, wakeup, wakeup_w, selector)
    server.send({"event": "ready", "pid": os.getpid(), "threads": threads})
    selector.register(channel, selectors.EVENT_READ, "channel")
    selector.register(wakeup, selectors.EVENT_READ, "signal")
    buffer = b""
    stopping = False
    while not stopping:
        if server.retiring and not server.children:
            break
        server.fork_spare()
        for key, _ in selector.select():
            if key.data == "signal":
                try:
                    signals = os.read(wakeup, 4096)
                except BlockingIOError:
                    signals = b""
                if any(int(s) in signals for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)):
                    stopping = True
                server.reap()
            else:
                try:
                    data = os.read(channel, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    server.channel_open = False
                    stopping = True
                    continue
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        server.handle(line)
        server.reap()
    server.kill_all()
    return 0


# --------------------------------------------------------------------------- guard


def guard() -> int:
    """Kill every registered process group when stdin reaches EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    buffer = b""
    while True:
        try:
            data = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            text = line.decode("ascii", "replace").strip()
            if len(text) > 1 and text[1:].isdigit():
                pgid = int(text[1:])
                if text[0] == "+":
                    groups.add(pgid)
                elif text[0] == "-":
                    groups.discard(pgid)
    for pgid in groups:
        _killpg(pgid, signal.SIGKILL)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"] and len(args) in (3, 4):
        warmup = json.loads(args[3]) if len(args) == 4 else None
        return serve(int(args[1]), [str(name) for name in json.loads(args[2])], warmup)
    if args[:1] == ["guard"]:
        return guard()
    sys.stderr.write("usage: forkserver.py serve PARENT_PID PRELOAD_JSON | guard\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
