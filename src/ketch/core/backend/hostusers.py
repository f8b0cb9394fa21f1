"""Multi-user mode on the local backend: every profile namespace's workloads run as
an OS user of its own, with that namespace's folders closed to the others.

:class:`NamespaceUsers` is the backend's :class:`~ketch.core.backend.Isolation`.
While it is on (``enabled()``: the store has users), a :class:`ProcessSpec` with a
``namespace`` is made to run as ``ketch-<namespace>`` (:func:`user_name`), created
with ``useradd --system`` the first time it is needed. The spec's folders that Ketch
made for it under ``KETCH_HOME`` (or under the local artifacts root) are handed to
that user with mode ``0700``: the folders of its log files (a pipeline task's
working folder holds its log; a job's object folder holds its replicas' logs), and
``spec.owned`` (a pipeline task's output artifacts), and the namespace's trial
folders (``logs/tuning/<namespace>``: a trial's job writes its metrics there). Its
``HOME`` is
``KETCH_HOME/profiles/<namespace>``, made the same way. The folders above those,
Ketch's own, are left traversable but not listable by others (``0711``), and the
files directly in ``KETCH_HOME`` (the SQLite store among them) are made ``0600``.

The server keeps reading every log and artifact: it runs as root. Logs are opened by
the server (or the fork server, as root) before the child takes its identity, so
they are written through inherited descriptors.

Only folders at least three levels below a root are handed over (``runs/<run>/
<task>``, ``logs/training/<ns>/<kind>/<name>/<uid>``, ``<root>/<pipeline>/<run>/
<task>``): never a shared folder. A folder that belongs to another OS user is never
taken. A working directory the spec names is used as it is (a container's
``workingDir``): it is not handed over.

Without root, multi-user mode cannot run workloads: each start is refused with the
reason, and :meth:`NamespaceUsers.problems` says so at the server's start.
``KETCH_HOST_ISOLATION=off`` runs them as the server's user instead, deliberately.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import os
import pwd
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ketch.core import config
from ketch.core.backend.spec import ProcessSpec, RunAs
from ketch.core.errors import BackendError

log = logging.getLogger("ketch.core.backend")

#: ``off`` (or 0, false, no): no host isolation in multi-user mode; every workload
#: runs as the server's user and profiles are kept apart over HTTP only
SWITCH = "KETCH_HOST_ISOLATION"
OFF = SWITCH + "=off"
PREFIX = "ketch-"
MAX_NAME = 32  # useradd's limit on Linux
MIN_DEPTH = 3  # how deep below a root a folder must lie to be handed to a user
# folders of a whole namespace its workloads write into, wherever in them: a trial's
# metrics files (``logs/tuning/<namespace>/<trial>/<uid>``, made by the trial
# controller, written by the trial's job)
NAMESPACE_FOLDERS = (("logs", "tuning"),)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_USERADD_BUSY = 10  # useradd: cannot lock /etc/passwd (another useradd runs)
_USERADD_EXISTS = 9


def user_name(namespace: str) -> str:
    """The OS user of ``namespace``: ``ketch-<namespace>``, cut to 32 characters with
    a hash of the whole name at its end when longer."""
    name = PREFIX + namespace
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def switched_off() -> bool:
    """Whether ``KETCH_HOST_ISOLATION`` turns host isolation off."""
    return os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def is_root() -> bool:
    return os.geteuid() == 0


def refusal(name: str) -> str:
    """Why a workload cannot start in multi-user mode without root."""
    return (
        f"cannot start {name!r}: multi-user mode runs each profile's workloads as an OS "
        f"user of its own, which needs Ketch to run as root (it runs as uid {os.geteuid()})"
    )


def _unreachable(path: Path) -> Path | None:
    """The first folder from ``/`` to ``path`` that other users cannot enter."""
    current = Path(path.anchor)
    for part in path.parts[1:]:
        current = current / part
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None  # made later, by root, with a mode Ketch chooses
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return None


class NamespaceUsers:
    """Runs each namespace's processes as its own OS user while ``enabled()`` says so.

    ``enabled`` is asked at most every ``ttl`` seconds (it reads the store). ``home``:
    ``KETCH_HOME`` (read when needed, by default). ``create``: whether missing users
    are made with ``useradd`` (as root).
    """

    def __init__(
        self,
        enabled: Callable[[], bool],
        *,
        home: Path | None = None,
        ttl: float = 1.0,
        create: bool = True,
    ) -> None:
        self._enabled = enabled
        self._home = home
        self._ttl = ttl
        self._create = create
        self._lock = threading.Lock()
        self._checked = (-float("inf"), False)
        self._users: dict[str, tuple[int, int]] = {}
        self._hardened: set[Path] = set()

    # -- when ------------------------------------------------------------------

    def active(self) -> bool:
        """Whether multi-user mode is on now."""
        at, value = self._checked
        now = time.monotonic()
        if now - at < self._ttl:
            return value
        value = bool(self._enabled())
        was = self._checked[1]
        self._checked = (now, value)
        if value and not was:  # turned on (at the server's start, or a first user added)
            for problem in self.problems():
                log.warning("WARNING: %s", problem)
        return value

    def problems(self) -> list[str]:
        """What keeps workloads from running isolated here (logged as warnings when
        multi-user mode turns on)."""
        if not self._checked[1]:
            return []
        if not is_root():
            return [
                "multi-user mode is on (the store has users) but Ketch does not run as "
                f"root (uid {os.geteuid()}): workloads cannot run as their profiles' OS "
                "users, so starting them is refused; run the server as root"
            ]
        found = []
        for path in (self.home(), Path(sys.executable).resolve()):
            closed = _unreachable(path)
            if closed is not None:
                found.append(
                    f"{closed} is closed to other users (mode "
                    f"{stat.S_IMODE(os.stat(closed).st_mode):04o}): workloads run as their "
                    f"profiles' OS users cannot reach {path}"
                )
        return found

    # -- the isolation -----------------------------------------------------------

    def isolate(self, spec: ProcessSpec) -> ProcessSpec:
        namespace = spec.namespace
        if namespace is None or spec.run_as is not None:
            return spec
        try:
            on = self.active()
        except Exception as exc:  # noqa: BLE001 - the hook reads the store, whatever it raises: refused, not run unisolated
            raise BackendError(
                f"cannot start {spec.name!r}: cannot tell whether multi-user mode is on: {exc}"
            ) from exc
        if not on:
            return spec
        if not is_root():
            raise BackendError(
                refusal(spec.name),
                hint=f"run the server as root, or set {OFF} to run workloads as the "
                "server's user (profiles are then kept apart over HTTP only)",
            )
        home = self.home()
        closed = _unreachable(home)
        if closed is not None:
            raise BackendError(
                f"cannot start {spec.name!r}: KETCH_HOME {home} lies in {closed}, which "
                f"other users cannot enter; {user_name(namespace)} could not reach its files",
                hint=f"allow others to enter it (chmod o+x {closed}), use another "
                f"KETCH_HOME, or set {OFF}",
            )
        uid, gid = self.ensure_user(namespace)
        self._harden(home)
        profile = home / "profiles" / namespace
        self._claim(spec.name, home, profile, uid, gid, depth=2)
        for parts in NAMESPACE_FOLDERS:
            shared = home.joinpath(*parts, namespace)
            if shared.is_dir():
                self._claim(spec.name, home, shared, uid, gid)
        folders = [p.parent for p in (spec.stdout_path, spec.stderr_path) if p is not None]
        for folder in dict.fromkeys([*folders, *spec.owned]):
            root = self._root_of(Path(os.path.abspath(folder)), home)
            if root is not None:
                self._claim(spec.name, root, Path(os.path.abspath(folder)), uid, gid)
        identity = RunAs(uid=uid, gid=gid, user=user_name(namespace), home=profile)
        return dataclasses.replace(spec, run_as=identity)

    def home(self) -> Path:
        return (self._home or config.ketch_home()).resolve()

    # -- users -------------------------------------------------------------------

    def ensure_user(self, namespace: str) -> tuple[int, int]:
        """The uid and gid of ``namespace``'s OS user, made when missing (as root)."""
        if not _NAMESPACE.match(namespace):
            raise BackendError(f"namespace {namespace!r} is not a valid profile name")
        name = user_name(namespace)
        with self._lock:
            known = self._users.get(name)
            if known is not None:
                return known
            found = _lookup(name)
            if found is None:
                if not self._create:
                    raise BackendError(f"OS user {name} for namespace {namespace!r} is missing")
                found = _create_user(name, namespace)
            self._users[name] = found
            return found

    # -- folders -----------------------------------------------------------------

    def _root_of(self, path: Path, home: Path) -> Path | None:
        roots = [home]
        artifacts = config.artifacts_root(home)
        if "://" not in artifacts or artifacts.startswith("file://"):
            roots.append(Path(artifacts.removeprefix("file://")).expanduser().resolve())
        # the deepest root: the artifacts root may lie inside KETCH_HOME
        for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
            if path.is_relative_to(root):
                return root
        return None

    def _harden(self, home: Path) -> None:
        """``KETCH_HOME`` traversable but not listable by others; its own files 0600."""
        if home in self._hardened:
            return
        try:
            info = os.stat(home)
            if info.st_uid == 0 and info.st_mode & 0o044:
                os.chmod(home, stat.S_IMODE(info.st_mode) & ~0o044)
            with os.scandir(home) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                        if mode & 0o077:
                            os.chmod(entry.path, mode & ~0o077)
        except OSError as exc:
            raise BackendError(f"cannot close {home} to profile users: {exc}") from exc
        self._hardened.add(home)

    def _claim(
        self, name: str, root: Path, path: Path, uid: int, gid: int, *, depth: int = MIN_DEPTH
    ) -> None:
        """Make ``path`` (under ``root``) ``uid``'s with mode 0700, with what is in it;
        the folders between stay root's, traversable only. Made when missing, walking
        from ``root`` without following a symlink."""
        parts = path.relative_to(root).parts
        if len(parts) < depth or ".." in parts:
            log.debug("not handing %s to uid %d: too near %s", path, uid, root)
            return
        try:
            root.mkdir(mode=0o711, parents=True, exist_ok=True)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BackendError(f"cannot start {name!r}: cannot open {root}: {exc}") from exc
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                try:
                    os.mkdir(part, 0o700 if last else 0o711, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
                os.close(fd)
                fd = child
                info = os.fstat(fd)
                if info.st_uid not in (0, uid):
                    raise BackendError(
                        f"cannot start {name!r}: {root.joinpath(*parts[: index + 1])} belongs "
                        f"to another OS user (uid {info.st_uid})"
                    )
                if not last:
                    if info.st_uid == 0 and info.st_mode & 0o044:
                        os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o044)
                    continue
                os.fchown(fd, uid, gid)
                os.fchmod(fd, 0o700)
                for _, dirs, files, at in os.fwalk(".", dir_fd=fd):
                    for entry in [*dirs, *files]:
                        os.chown(entry, uid, gid, dir_fd=at, follow_symlinks=False)
        except BackendError:
            raise
        except OSError as exc:
            raise BackendError(
                f"cannot start {name!r}: cannot hand {path} to uid {uid}: {exc}"
            ) from exc
        finally:
            os.close(fd)


def _lookup(name: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _create_user(name: str, namespace: str) -> tuple[int, int]:
    """``useradd --system`` for ``name``, once across processes (a lock file; another
    process creating it first is fine)."""
    if not is_root():
        raise BackendError(f"cannot create OS user {name}: Ketch does not run as root")
    folder = "/run/lock" if os.path.isdir("/run/lock") else "/run"
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(f"{folder}/ketch-useradd.lock", flags, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for attempt in range(20):
                found = _lookup(name)
                if found is not None:
                    return found
                done = subprocess.run(
                    [
                        "useradd",
                        "--system",
                        "--no-create-home",
                        "--user-group",
                        "--home-dir",
                        "/nonexistent",
                        "--shell",
                        "/usr/sbin/nologin",
                        "--comment",
                        f"Ketch profile {namespace}",
                        name,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode in (0, _USERADD_EXISTS):
                    continue
                if done.returncode == _USERADD_BUSY and attempt < 19:
                    time.sleep(0.1)
                    continue
                raise BackendError(
                    f"cannot create OS user {name} for namespace {namespace!r}: "
                    f"useradd exited with {done.returncode}: {done.stderr.strip()}"
                )
        except FileNotFoundError as exc:
            raise BackendError(
                f"cannot create OS user {name}: useradd is not installed",
                hint="install the passwd package (useradd), or create the user yourself",
            ) from exc
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    raise BackendError(f"cannot create OS user {name}: it did not appear after useradd")
