"""Deleting a Profile removes its namespace's pipelines too, over a real ``ketch up``
with users (SQLite and PostgreSQL) and the real ``kfp.Client`` of two profile owners:
the deleted namespace's runs (a running one terminated first: its task's process is
stopped), recurring runs, experiments and namespaced pipelines are gone from the KFP
v2beta1 API, and its runs' working folders and artifacts are gone from disk, while the
other profile's runs are untouched. A removal that a ``kill -9`` interrupted (the
profile deleted, its namespace not yet) is finished by the next server."""

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kfp
import pytest
from kfp import compiler, dsl
from kfp_server_api.exceptions import ApiException

from tests.core.conftest import _postgres_database
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, wait_until
from tests.tenancy.helpers import add_users, as_user, directory_of
from tests.tenancy.profiles import NAMESPACES, PROFILES, profile

pytestmark = pytest.mark.timeout(300)

ADMIN, ALICE, BOB = "admin@example.com", "alice@example.com", "bob@example.com"
GONE, KEPT = "pl-alice", "pl-bob"
KFP = "/apis/v2beta1"
PIPELINE = "profile-writer"


@dsl.component
def write(text: str, data: dsl.Output[dsl.Dataset]) -> None:
    print("writing", text)
    with open(data.path, "w") as f:
        f.write(text)


@dsl.pipeline(name=PIPELINE)
def writer(text: str = "hello") -> None:
    write(text=text)


@dsl.component
def linger(pid_file: str) -> None:
    import os
    import time

    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


@dsl.pipeline(name="profile-linger")
def lingering(pid_file: str) -> None:
    linger(pid_file=pid_file)


@pytest.fixture(autouse=True)
def kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client keeps its namespace in ~/.config/kfp: a file of this test's own."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp(f"ketch-profile-runs-{request.param}")
    if request.param == "sqlite":
        yield from serve(Server(home, extra_env=SERVER_ENV))
        return
    for url in _postgres_database():
        yield from serve(Server(home, database_url=url, extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def tokens(server: Server) -> Iterator[dict[str, str]]:
    for directory in directory_of(server):
        yield add_users(directory, (ADMIN, ALICE, BOB), admin=ADMIN)


def client_as(server: Server, token: str, namespace: str | None = None) -> kfp.Client:
    if namespace is None:
        return kfp.Client(host=server.url, existing_token=token)
    return kfp.Client(host=server.url, namespace=namespace, existing_token=token)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def status_of(call: Any) -> int:
    with pytest.raises(ApiException) as err:
        call()
    return int(err.value.status)


def make_profile(server: Server, tokens: dict[str, str], name: str, owner: str) -> None:
    with as_user(server, tokens[ADMIN]) as http:
        made = http.post(PROFILES, json=profile(name, owner))
        assert made.status_code == 201, made.text
    with as_user(server, tokens[owner]) as http:
        assert wait_until(
            lambda: http.get(f"{KFP}/runs", params={"namespace": name}).status_code == 200,
            timeout=60,
        ), "the profile's owner got no access to its namespace"


def finished_run(client: kfp.Client, experiment_id: str, package: Path, text: str) -> Any:
    run = client.run_pipeline(
        experiment_id, unique("run"), pipeline_package_path=str(package), params={"text": text}
    )
    done = client.wait_for_run_completion(run.run_id, timeout=120, sleep_duration=0.2)
    assert done.state == "SUCCEEDED", done
    return done


def run_folders(server: Server, pipeline: str, run_id: str) -> list[Path]:
    """Where Ketch keeps a run on disk: its working folder (logs) and its artifacts."""
    return [server.home / "runs" / run_id, server.home / "artifacts" / pipeline / run_id]


def artifact_text(http: httpx.Client, run: Any) -> str:
    import base64
    import io
    import tarfile

    (task,) = [t for t in run.run_details.task_details if t.display_name == "write"]
    path = f"{KFP}/runs/{run.run_id}/nodes/{task.task_id}/artifacts/data:read"
    answer = http.get(path)
    assert answer.status_code == 200, answer.text
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(answer.json()["data"]))) as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_deleted_profile_takes_its_pipelines_and_leaves_the_others(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    make_profile(server, tokens, GONE, ALICE)
    make_profile(server, tokens, KEPT, BOB)
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    linger_package = tmp_path / "linger.yaml"
    compiler.Compiler().compile(lingering, str(linger_package))

    alice = client_as(server, tokens[ALICE], GONE)
    bob = client_as(server, tokens[BOB], KEPT)
    alice_experiment = alice.create_experiment(unique("exp"), namespace=GONE)
    bob_experiment = bob.create_experiment(unique("exp"), namespace=KEPT)
    alice_done = finished_run(alice, alice_experiment.experiment_id, package, "alice's")
    bob_done = finished_run(bob, bob_experiment.experiment_id, package, "bob's")
    pid_file = tmp_path / "linger.pid"
    running = alice.run_pipeline(
        alice_experiment.experiment_id,
        unique("running"),
        pipeline_package_path=str(linger_package),
        params={"pid_file": str(pid_file)},
    )
    recurring = alice.create_recurring_run(
        alice_experiment.experiment_id,
        unique("nightly"),
        cron_expression="0 0 0 * * *",
        pipeline_package_path=str(package),
        enabled=False,
    )
    private = alice.upload_pipeline(str(package), unique("private"), namespace=GONE)
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=120)
    pid = int(pid_file.read_text())
    assert alive(pid)
    alice_folders = run_folders(server, PIPELINE, alice_done.run_id)
    bob_folders = run_folders(server, PIPELINE, bob_done.run_id)
    running_folder = server.home / "runs" / running.run_id
    assert all(f.is_dir() for f in [*alice_folders, *bob_folders, running_folder])

    with as_user(server, tokens[ADMIN]) as http:
        deleted = http.delete(f"{PROFILES}/{GONE}")
        assert deleted.status_code == 200, deleted.text

        # the running run's task is stopped, then the namespace goes with what it held
        assert wait_until(lambda: not alive(pid), timeout=120), "the running task still runs"
        assert wait_until(
            lambda: http.get(f"{NAMESPACES}/{GONE}").status_code == 404, timeout=120
        ), http.get(f"{NAMESPACES}/{GONE}").json()
    admin = client_as(server, tokens[ADMIN])
    for run_id in (alice_done.run_id, running.run_id):
        assert status_of(lambda run_id=run_id: admin.get_run(run_id)) == 404
    assert not admin.list_runs(namespace=GONE, page_size=100).runs
    # a list makes the namespace's "Default" experiment (as KFP does): nothing else is left
    listed = admin.list_experiments(namespace=GONE, page_size=100).experiments or []
    assert [e.display_name for e in listed] == ["Default"]
    assert status_of(lambda: admin.get_experiment(alice_experiment.experiment_id)) == 404
    assert status_of(lambda: admin.get_recurring_run(recurring.recurring_run_id)) == 404
    assert status_of(lambda: admin.get_pipeline(private.pipeline_id)) == 404
    for folder in [*alice_folders, running_folder]:
        assert not folder.exists(), folder
    with as_user(server, tokens[ADMIN]) as http:
        runs = http.get(f"/apis/pipelines.ketch.dev/v1/namespaces/{GONE}/pipelineruns")
        assert runs.status_code == 200 and runs.json()["items"] == []

    # bob's namespace is as it was
    kept = bob.get_run(bob_done.run_id)
    assert (kept.state, kept.storage_state) == ("SUCCEEDED", "AVAILABLE")
    assert {r.run_id for r in bob.list_runs(page_size=100).runs} == {bob_done.run_id}
    assert bob.get_experiment(experiment_id=bob_experiment.experiment_id).namespace == KEPT
    assert all(f.is_dir() for f in bob_folders)
    with as_user(server, tokens[BOB]) as http:
        assert artifact_text(http, kept) == "bob's"
        logs = http.get(
            f"/apis/pipelines.ketch.dev/v1/namespaces/{KEPT}/pipelineruns/{kept.run_id}/logs"
        )
        assert logs.status_code == 200 and "writing bob's" in logs.text

    # the name is free: a new profile of it starts empty
    make_profile(server, tokens, GONE, BOB)
    again = client_as(server, tokens[BOB], GONE)
    assert not again.list_runs(page_size=100).runs
    listed = again.list_experiments(page_size=100).experiments or []
    assert alice_experiment.experiment_id not in {e.experiment_id for e in listed}
    with as_user(server, tokens[ADMIN]) as http:
        assert http.delete(f"{PROFILES}/{GONE}").status_code == 200


def test_deleting_a_namespace_directly_takes_its_experiments_and_pipelines(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    name = "pl-direct"
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    with as_user(server, tokens[ADMIN]) as http:
        made = http.post(
            NAMESPACES, json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        assert made.status_code == 201, made.text
        admin = client_as(server, tokens[ADMIN], name)
        experiment = admin.create_experiment(unique("exp"), namespace=name)
        pipeline = admin.upload_pipeline(str(package), unique("mine"), namespace=name)
        assert http.delete(f"{NAMESPACES}/{name}").status_code == 200
    assert status_of(lambda: admin.get_experiment(experiment.experiment_id)) == 404
    assert status_of(lambda: admin.get_pipeline(pipeline.pipeline_id)) == 404


def test_a_removal_a_kill_interrupted_is_finished_after_the_restart(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    name = "pl-interrupted"
    make_profile(server, tokens, name, ALICE)
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    alice = client_as(server, tokens[ALICE], name)
    experiment = alice.create_experiment(unique("exp"), namespace=name)
    done = finished_run(alice, experiment.experiment_id, package, "interrupted")
    folders = run_folders(server, PIPELINE, done.run_id)
    assert all(f.is_dir() for f in folders)

    # killed as it deleted the profile: the profile is gone, nothing else is yet
    server.stop(signal.SIGKILL)
    server.store().delete("Profile", "default", name)
    server.start()

    with as_user(server, tokens[ADMIN]) as http:
        assert wait_until(
            lambda: http.get(f"{NAMESPACES}/{name}").status_code == 404, timeout=120
        ), http.get(f"{NAMESPACES}/{name}").json()
    admin = client_as(server, tokens[ADMIN])
    assert status_of(lambda: admin.get_run(done.run_id)) == 404
    assert status_of(lambda: admin.get_experiment(experiment.experiment_id)) == 404
    assert not any(f.exists() for f in folders)
    assert os.path.isdir(server.home / "runs")  # Ketch's own folders stay
