"""Multi-user mode on the host: each namespace's workloads run as an OS user of its
own, and one namespace's processes cannot read another's files. Real OS users
(``useradd``, removed at the end), real processes started directly and from the warm
fork server, a real pipeline run. Needs root: skipped otherwise."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ketch.core.backend import LocalBackend, ProcessSpec, command_entry
from ketch.core.backend.handles import ForkedHandle
from ketch.core.backend.hostusers import MAX_NAME, NamespaceUsers, user_name
from ketch.core.errors import BackendError
from tests.tenancy.isolation_components import PEEK

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="runs workloads as other OS users: needs root (the CI and dev machines run tests as root)",
    ),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is not installed"),
]

PY = sys.executable
# namespaces of this test process: their users are removed at the end
A, B = f"iso{os.getpid()}-a", f"iso{os.getpid()}-b"


def _python_reachable() -> bool:
    """Whether other users can reach this interpreter (a new process needs it; a task
    forked from the warm fork server only needs what it imports later)."""
    path = Path(PY).resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return True


@pytest.fixture(scope="module", autouse=True)
def os_users() -> Iterator[None]:
    yield
    for namespace in (A, B):
        name = user_name(namespace)
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # pytest's own tmp folders are closed to other users (0700): a folder in /tmp
    made = Path(tempfile.mkdtemp(prefix="ketch-isolation-"))
    made.chmod(0o755)
    monkeypatch.setenv("KETCH_HOME", str(made))
    monkeypatch.delenv("KETCH_ARTIFACTS", raising=False)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _backend(warm: int) -> LocalBackend:
    backend = LocalBackend(max_warm_interpreters=warm)
    backend.isolation = NamespaceUsers(lambda: True)
    return backend


def _task(home: Path, namespace: str, run: str) -> tuple[Path, Path]:
    """A pipeline task's working folder and its artifact folder, as the executor lays them out."""
    return home / "runs" / run / "task", home / "artifacts" / "pipe" / run / "task"


def _write_secret(backend: LocalBackend, home: Path, namespace: str, run: str) -> Path:
    """A process of ``namespace`` writes a secret into its artifact folder."""
    work, artifacts = _task(home, namespace, run)
    secret = artifacts / "secret.txt"
    handle = backend.start(
        ProcessSpec(
            name=f"{namespace} writer",
            command=["/bin/sh", "-c", f"echo secret-of-{namespace} > {secret}"],
            cwd=None,
            stdout_path=work / "task.log",
            stderr_path=work / "task.log",
            namespace=namespace,
            owned=(artifacts,),
        )
    )
    assert handle.wait(30) == 0, (work / "task.log").read_text()
    return secret


def test_user_names_fit_useradd() -> None:
    assert user_name("team-a") == "ketch-team-a"
    long = user_name("a-very-long-namespace-name-for-a-whole-department")
    assert len(long) <= MAX_NAME and long.startswith("ketch-a-very-long")
    assert long != user_name("a-very-long-namespace-name-for-a-whole-departmenT".lower() + "x")


def test_users_are_made_once_when_asked_for_at_the_same_time(home: Path) -> None:
    # a namespace of its own, so that its user does not exist yet
    namespace = f"iso{os.getpid()}-c"
    try:
        policies = [NamespaceUsers(lambda: True) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            made = set(pool.map(lambda users: users.ensure_user(namespace), policies))
        entry = pwd.getpwnam(user_name(namespace))
        assert made == {(entry.pw_uid, entry.pw_gid)}
        assert entry.pw_shell == "/usr/sbin/nologin"
        assert entry.pw_uid < 1000  # a system user
    finally:
        subprocess.run(["userdel", user_name(namespace)], capture_output=True, check=False)
        subprocess.run(["groupdel", user_name(namespace)], capture_output=True, check=False)


def test_a_process_reads_its_own_namespace_files_and_not_anothers(home: Path) -> None:
    with _backend(warm=0) as backend:
        theirs = _write_secret(backend, home, B, "run-b")
        mine = _write_secret(backend, home, A, "run-a")
        work, _ = _task(home, A, "run-a")
        log = work / "reader.log"
        handle = backend.start(
            ProcessSpec(
                name="a reader",
                command=[
                    "/bin/sh",
                    "-c",
                    f'id -u; id -G; echo "home=$HOME"; umask; cat {mine}; cat {theirs}; '
                    f"ls {theirs.parent}; echo done",
                ],
                stdout_path=log,
                stderr_path=log,
                namespace=A,
            )
        )
        assert handle.wait(30) == 0
    out = log.read_text()
    a_user, b_user = pwd.getpwnam(user_name(A)), pwd.getpwnam(user_name(B))
    lines = out.splitlines()
    assert lines[0] == str(a_user.pw_uid)
    assert lines[1] == str(a_user.pw_gid)  # no supplementary group (root's are gone)
    assert lines[2] == f"home={home / 'profiles' / A}"
    assert lines[3] == "0077"
    assert f"secret-of-{A}" in out
    assert f"secret-of-{B}" not in out
    assert out.count("Permission denied") == 2, out  # neither the file nor its folder
    # the folders are their users' and closed; what the process wrote is its own alone
    folder = theirs.parent
    assert folder.stat().st_uid == b_user.pw_uid
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "profiles" / B).stat().st_mode) == 0o700
    # Ketch's own folders above stay root's: traversable, not listable
    assert stat.S_IMODE((home / "artifacts").stat().st_mode) == 0o711
    assert (home / "artifacts").stat().st_uid == 0


def test_a_task_forked_from_the_warm_server_drops_to_its_user(home: Path) -> None:
    with _backend(warm=1) as backend:
        theirs = _write_secret(backend, home, B, "run-b")
        work, _ = _task(home, A, "run-a")
        code = textwrap.dedent(
            f"""
            import os
            try:
                open({str(theirs)!r}).read()
                print("read it")
            except PermissionError as exc:
                print("PermissionError", exc.errno)
            print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
            print(os.environ["HOME"])
            try:
                os.setuid(0)
                print("root again")
            except PermissionError:
                print("cannot become root")
            """
        )
        command = [PY, "-c", code]
        entry = command_entry(command, PY)
        assert entry is not None
        handle = backend.start(
            ProcessSpec(
                name="a forked reader",
                command=command,
                python=entry,
                stdout_path=work / "task.log",
                stderr_path=work / "task.log",
                namespace=A,
            )
        )
        assert isinstance(handle, ForkedHandle)  # from the fork server, not a new process
        assert handle.wait(60) == 0, (work / "task.log").read_text()
    uid, gid = pwd.getpwnam(user_name(A))[2:4]
    lines = (work / "task.log").read_text().splitlines()
    assert lines[0] == "PermissionError 13"
    assert lines[1] == f"{uid} {uid} {gid} []"
    assert lines[2] == str(home / "profiles" / A)
    assert lines[3] == "cannot become root"


def test_a_trials_metrics_folder_is_its_namespaces(home: Path) -> None:
    # made by the trial controller (as root); written by the trial's job
    metrics = home / "logs" / "tuning" / A / "trial-1" / "uid-1" / "fs" / "var" / "log"
    metrics.mkdir(parents=True)
    with _backend(warm=0) as backend:
        work, _ = _task(home, A, "run-a")
        handle = backend.start(
            ProcessSpec(
                name="trial job",
                command=["/bin/sh", "-c", f"echo accuracy=0.9 > {metrics / 'metrics.log'}"],
                stdout_path=work / "job.log",
                stderr_path=work / "job.log",
                namespace=A,
            )
        )
        assert handle.wait(30) == 0, (work / "job.log").read_text()
    assert (metrics / "metrics.log").read_text() == "accuracy=0.9\n"
    folder = home / "logs" / "tuning" / A
    assert folder.stat().st_uid == pwd.getpwnam(user_name(A)).pw_uid
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_nothing_changes_without_a_namespace_or_when_off(home: Path) -> None:
    off = NamespaceUsers(lambda: False)
    with LocalBackend(max_warm_interpreters=0) as backend:
        backend.isolation = off
        for namespace in (A, None):
            out = home / f"plain-{namespace}.log"
            spec = ProcessSpec(
                name="plain",
                command=["/bin/sh", "-c", "id -u"],
                stdout_path=out,
                stderr_path=out,
                namespace=namespace,
            )
            assert backend.start(spec).wait(30) == 0
            assert out.read_text().strip() == "0"
    assert not (home / "profiles").exists()


def test_without_root_a_workload_is_refused_with_the_reason(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ketch.core.backend import hostusers

    users = NamespaceUsers(lambda: True)
    monkeypatch.setattr(hostusers, "is_root", lambda: False)
    assert users.active()
    assert "does not run as root" in users.problems()[0]
    with LocalBackend(max_warm_interpreters=0) as backend:
        backend.isolation = users
        with pytest.raises(BackendError, match="needs Ketch to run as root"):
            backend.start(ProcessSpec(name="job", command=["/bin/true"], namespace=A))


def test_a_folder_of_another_user_is_never_taken(home: Path) -> None:
    with _backend(warm=0) as backend:
        theirs = _write_secret(backend, home, B, "run-b")
        with pytest.raises(BackendError, match="belongs to another OS user"):
            backend.start(
                ProcessSpec(
                    name="thief",
                    command=["/bin/true"],
                    namespace=A,
                    owned=(theirs.parent,),
                )
            )
    assert theirs.parent.stat().st_uid == pwd.getpwnam(user_name(B)).pw_uid


def test_ketch_home_closed_to_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"  # pytest's folders are 0700
    home.mkdir()
    tmp_path.chmod(0o700)
    monkeypatch.setenv("KETCH_HOME", str(home))
    users = NamespaceUsers(lambda: True)
    assert users.active()
    assert any("closed to other users" in p for p in users.problems())
    with LocalBackend(max_warm_interpreters=0) as backend:
        backend.isolation = users
        with pytest.raises(BackendError, match="other users cannot enter"):
            backend.start(ProcessSpec(name="job", command=["/bin/true"], namespace=A))


# -- a real pipeline run -------------------------------------------------------------


def test_a_pipeline_task_cannot_read_another_profiles_artifacts(home: Path) -> None:
    from ketch.core.store.db import Database
    from ketch.pipelines.service import RunService

    database = Database()
    with _backend(warm=2) as backend:
        theirs = _write_secret(backend, home, B, "run-b")
        service = RunService(database, backend=backend)
        service.start()
        try:
            run_id = service.submit(PEEK, parameters={"other": str(theirs)}, namespace=A)
            state = service.wait(run_id, 180)
        finally:
            service.stop()
            database.dispose()
    logs = "\n".join(p.read_text() for p in (home / "runs" / run_id).rglob("task.log"))
    assert state == "SUCCEEDED", logs
    uid = pwd.getpwnam(user_name(A)).pw_uid
    [seen] = (home / "artifacts" / "peek" / run_id).rglob("seen")
    assert seen.read_text() == "PermissionError 13"
    assert seen.stat().st_uid == uid  # written by the task, as its profile's user
    assert stat.S_IMODE(seen.parent.stat().st_mode) == 0o700
    [work] = [p.parent for p in (home / "runs" / run_id).rglob("task.log")]
    assert work.stat().st_uid == uid


# -- the server's wiring -----------------------------------------------------------------


def _no_access(database: object, store: object) -> None:
    """The access implementation the server would make (not needed here)."""


def test_the_server_isolates_once_its_store_has_users(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ketch.core.store.db import Database
    from ketch.tenancy.isolation import isolating
    from ketch.tenancy.tables import MIGRATIONS
    from ketch.tenancy.users import Directory

    database = Database(f"sqlite:///{home / 'ketch.db'}")
    database.migrate([MIGRATIONS])
    try:
        with LocalBackend(max_warm_interpreters=0) as backend:
            isolating(_no_access, backend)(database, None)  # type: ignore[arg-type]
            users = backend.isolation
            assert isinstance(users, NamespaceUsers)
            assert not users.active()  # no users: single-user, nothing changes
            Directory(database).add("alice@example.com", admin=True)
            time.sleep(1.1)  # the store is read at most once a second
            assert users.active()
            log = home / "runs" / "r" / "t" / "job.log"
            handle = backend.start(
                ProcessSpec(
                    name="job",
                    command=["/bin/sh", "-c", "id -un"],
                    stdout_path=log,
                    stderr_path=log,
                    namespace=A,
                )
            )
            assert handle.wait(30) == 0
            assert log.read_text().strip() == user_name(A)
            assert stat.S_IMODE((home / "ketch.db").stat().st_mode) == 0o600  # the store is closed

            monkeypatch.setenv("KETCH_HOST_ISOLATION", "off")
            isolating(_no_access, backend)(database, None)  # type: ignore[arg-type]
            assert backend.isolation is None
    finally:
        database.dispose()
