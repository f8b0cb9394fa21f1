"""The KFP API in multi-user mode, over a real ``ketch up`` with users: the real
``kfp.Client(host, namespace=..., existing_token=...)`` of two profile owners, alice
and bob, each in their own namespace; a contributor with the view role in alice's;
a cluster admin; and an anonymous client.

Each sees only the experiments and runs of the namespaces they hold a role in (lists
that name a namespace and lists that do not); another user's run is refused by id
(read, terminate, retry, archive, delete, its artifacts and its logs) and nothing is
changed; shared pipelines are read by everyone signed in and written by admins only.
"""

import base64
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kfp
import pytest
from kfp import compiler, dsl
from kfp_server_api.exceptions import ApiException

from ketch.core.access import PUBLIC, rule_of
from ketch.pipelines.api import routers
from ketch.server.access import routes_of
from ketch.tenancy.users import Directory
from tests.server.fixtures import DATABASES, serve_on
from tests.server.helpers import Server, wait_until
from tests.tenancy.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    as_user,
    directory_of,
    two_owners_and_a_viewer,
)

pytestmark = pytest.mark.timeout(300)

KFP = "/apis/v2beta1"


@dsl.component
def write(text: str, data: dsl.Output[dsl.Dataset]) -> None:
    print("writing", text)
    with open(data.path, "w") as f:
        f.write(text)


@dsl.pipeline(name="multiuser-writer")
def writer(text: str = "hello") -> None:
    write(text=text)


@pytest.fixture(autouse=True)
def kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client keeps its namespace in ~/.config/kfp: a file of this test's own."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture(scope="module", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serve_on(request.param, tmp_path_factory.mktemp(f"ketch-kfp-users-{request.param}"))


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    def reads(http: httpx.Client, namespace: str) -> bool:
        return http.get(f"{KFP}/runs", params={"namespace": namespace}).status_code == 200

    return two_owners_and_a_viewer(server, directory, ("alice-ns", "bob-ns"), reads)


def client_as(server: Server, token: str | None, namespace: str | None = None) -> kfp.Client:
    if namespace is None:
        return kfp.Client(host=server.url, existing_token=token)
    return kfp.Client(host=server.url, namespace=namespace, existing_token=token)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def status_of(call: Any) -> int:
    with pytest.raises(ApiException) as err:
        call()
    return int(err.value.status)


def _run_in(server: Server, token: str, namespace: str, tmp: Path, text: str) -> tuple[Any, Any]:
    client = client_as(server, token, namespace)
    package = tmp / f"{namespace}.yaml"
    compiler.Compiler().compile(writer, str(package))
    experiment = client.create_experiment(unique("exp"), namespace=namespace)
    assert experiment.namespace == namespace
    run = client.run_pipeline(
        experiment.experiment_id,
        unique("run"),
        pipeline_package_path=str(package),
        params={"text": text},
    )
    done = client.wait_for_run_completion(run.run_id, timeout=120, sleep_duration=0.2)
    assert done.state == "SUCCEEDED", done
    return experiment, done


@pytest.fixture(scope="module")
def alice_run(
    server: Server, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any]:
    return _run_in(server, tokens[ALICE], "alice-ns", tmp_path_factory.mktemp("a"), "alice's")


@pytest.fixture(scope="module")
def bob_run(
    server: Server, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any]:
    return _run_in(server, tokens[BOB], "bob-ns", tmp_path_factory.mktemp("b"), "bob's")


def artifact_path(run: Any) -> str:
    (task,) = [t for t in run.run_details.task_details if t.display_name == "write"]
    return f"{KFP}/runs/{run.run_id}/nodes/{task.task_id}/artifacts/data:read"


def logs_path(namespace: str, run_id: str) -> str:
    return f"/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{run_id}/logs"


def test_healthz_says_multi_user_to_anyone(server: Server, tokens: dict[str, str]) -> None:
    with as_user(server, None) as http:
        answer = http.get(f"{KFP}/healthz")
        assert answer.status_code == 200 and answer.json()["multi_user"] is True


def test_each_user_lists_only_their_namespaces(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any], bob_run: tuple[Any, Any]
) -> None:
    (alice_exp, alice), (bob_exp, bob) = alice_run, bob_run
    alice_client = client_as(server, tokens[ALICE], "alice-ns")
    bob_client = client_as(server, tokens[BOB], "bob-ns")

    def run_ids(client: kfp.Client, **kwargs: Any) -> set[str]:
        return {r.run_id for r in client.list_runs(page_size=100, **kwargs).runs or []}

    def experiment_ids(client: kfp.Client, **kwargs: Any) -> set[str]:
        listed = client.list_experiments(page_size=100, **kwargs).experiments or []
        return {e.experiment_id for e in listed}

    # with the client's namespace, and without any (the namespaces one may read)
    for client in (alice_client, client_as(server, tokens[ALICE])):
        assert alice.run_id in run_ids(client) and bob.run_id not in run_ids(client)
        assert alice_exp.experiment_id in experiment_ids(client)
        assert bob_exp.experiment_id not in experiment_ids(client)
    for client in (bob_client, client_as(server, tokens[BOB])):
        assert bob.run_id in run_ids(client) and alice.run_id not in run_ids(client)
        assert alice_exp.experiment_id not in experiment_ids(client)
    assert run_ids(alice_client, experiment_id=alice_exp.experiment_id) == {alice.run_id}
    listed = alice_client.list_runs(page_size=100)
    assert {r.experiment_id for r in listed.runs} <= experiment_ids(alice_client)

    # naming another user's namespace or experiment is refused, as listing it in Kubeflow
    assert status_of(lambda: bob_client.list_runs(namespace="alice-ns")) == 403
    assert status_of(lambda: bob_client.list_runs(experiment_id=alice_exp.experiment_id)) == 403
    assert status_of(lambda: bob_client.list_experiments(namespace="alice-ns")) == 403
    assert status_of(lambda: bob_client.list_recurring_runs(namespace="alice-ns")) == 403

    # the view role in alice's namespace reads it; the cluster admin reads everything
    carol = client_as(server, tokens[CAROL])
    assert run_ids(carol, namespace="alice-ns") == run_ids(alice_client)
    assert alice.run_id in run_ids(carol) and bob.run_id not in run_ids(carol)
    admin = client_as(server, tokens[ADMIN])
    assert {alice.run_id, bob.run_id} <= run_ids(admin)
    assert {alice_exp.experiment_id, bob_exp.experiment_id} <= experiment_ids(admin)
    assert run_ids(admin, namespace="bob-ns") == run_ids(bob_client)


def test_another_users_run_is_refused_by_id(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any], tmp_path: Path
) -> None:
    experiment, run = alice_run
    bob = client_as(server, tokens[BOB], "bob-ns")
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    assert status_of(lambda: bob.get_run(run.run_id)) == 403
    assert status_of(lambda: bob.terminate_run(run.run_id)) == 403
    assert status_of(lambda: bob.archive_run(run.run_id)) == 403
    assert status_of(lambda: bob.delete_run(run.run_id)) == 403
    assert status_of(lambda: bob.get_experiment(experiment_id=experiment.experiment_id)) == 403
    assert status_of(lambda: bob.archive_experiment(experiment.experiment_id)) == 403
    assert status_of(lambda: bob.delete_experiment(experiment.experiment_id)) == 403
    # bob's runs cannot go into alice's experiment, nor his experiments into her namespace
    assert (
        status_of(
            lambda: bob.run_pipeline(
                experiment.experiment_id, "intruder", pipeline_package_path=str(package)
            )
        )
        == 403
    )
    assert status_of(lambda: bob.create_experiment(unique("intruder"), namespace="alice-ns")) == 403
    with as_user(server, tokens[BOB]) as http:
        retried = http.post(f"{KFP}/runs/{run.run_id}:retry")
        assert retried.status_code == 403
        message = retried.json()["message"]
        assert f'User "{BOB}" cannot retry resource "runs"' in message
        assert 'in the namespace "alice-ns"' in message
        assert http.get(artifact_path(run)).status_code == 403
        assert http.get(logs_path("alice-ns", run.run_id)).status_code == 403
        cancel = f"/apis/pipelines.ketch.dev/v1/namespaces/alice-ns/pipelineruns/{run.run_id}"
        assert http.post(f"{cancel}/cancel").status_code == 403
        assert http.post(f"{cancel}/retry").status_code == 403
        # naming his own namespace does not reach alice's run either
        assert http.get(logs_path("bob-ns", run.run_id)).status_code == 404
    # nothing changed; alice reads her run, its artifact and its logs
    alice = client_as(server, tokens[ALICE], "alice-ns")
    got = alice.get_run(run.run_id)
    assert (got.state, got.storage_state) == ("SUCCEEDED", "AVAILABLE")
    assert alice.get_experiment(experiment_id=experiment.experiment_id).storage_state == (
        "AVAILABLE"
    )
    with as_user(server, tokens[ALICE]) as http:
        assert _artifact_text(http, artifact_path(run)) == "alice's"
        logs = http.get(logs_path("alice-ns", run.run_id))
        assert logs.status_code == 200 and "writing alice's" in logs.text

    # the audit log names what bob tried, in alice's namespace
    def refused() -> list[dict[str, Any]]:
        with as_user(server, tokens[ADMIN]) as http:
            items: list[dict[str, Any]] = http.get("/auth/audit", params={"user": BOB}).json()[
                "items"
            ]
        return [e for e in items if e["verb"] == "terminate"]

    (entry,) = wait_until(refused, timeout=10)
    assert (entry["resource"], entry["namespace"], entry["name"], entry["code"]) == (
        "runs",
        "alice-ns",
        run.run_id,
        403,
    )


def _artifact_text(http: httpx.Client, path: str) -> str:
    answer = http.get(path)
    assert answer.status_code == 200, answer.text
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(answer.json()["data"]))) as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


def test_the_view_role_reads_but_does_not_write(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any], tmp_path: Path
) -> None:
    experiment, run = alice_run
    carol = client_as(server, tokens[CAROL], "alice-ns")
    assert carol.get_run(run.run_id).run_id == run.run_id
    assert carol.get_experiment(experiment_id=experiment.experiment_id).namespace == "alice-ns"
    with as_user(server, tokens[CAROL]) as http:
        assert _artifact_text(http, artifact_path(run)) == "alice's"
        assert "writing alice's" in http.get(logs_path("alice-ns", run.run_id)).text
        assert http.post(f"{KFP}/runs/{run.run_id}:retry").status_code == 403
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    assert (
        status_of(
            lambda: carol.run_pipeline(
                experiment.experiment_id, "viewer's", pipeline_package_path=str(package)
            )
        )
        == 403
    )
    assert status_of(lambda: carol.terminate_run(run.run_id)) == 403
    assert status_of(lambda: carol.archive_run(run.run_id)) == 403
    assert status_of(lambda: carol.create_experiment(unique("viewer"), namespace="alice-ns")) == 403


def test_anonymous_callers_are_401(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any]
) -> None:
    _, run = alice_run
    anonymous = client_as(server, None, "alice-ns")
    assert status_of(lambda: anonymous.list_runs()) == 401
    assert status_of(lambda: anonymous.get_run(run.run_id)) == 401
    assert status_of(lambda: anonymous.list_pipelines()) == 401
    with as_user(server, None) as http:
        assert http.get(artifact_path(run)).status_code == 401
        assert http.get(logs_path("alice-ns", run.run_id)).status_code == 401


def test_shared_pipelines_are_read_by_all_and_written_by_admins(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any], tmp_path: Path
) -> None:
    experiment, _ = alice_run
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    admin = client_as(server, tokens[ADMIN])
    alice = client_as(server, tokens[ALICE], "alice-ns")
    bob = client_as(server, tokens[BOB], "bob-ns")

    shared = admin.upload_pipeline(str(package), pipeline_name=unique("shared"))
    assert shared.namespace in (None, "", "default")  # shared: no profile's namespace
    listed = {p.pipeline_id for p in bob.list_pipelines(page_size=100).pipelines}
    assert shared.pipeline_id in listed
    assert bob.get_pipeline(shared.pipeline_id).name == shared.name
    (version,) = alice.list_pipeline_versions(shared.pipeline_id).pipeline_versions
    run = alice.run_pipeline(
        experiment.experiment_id,
        unique("from-shared"),
        pipeline_id=shared.pipeline_id,
        version_id=version.pipeline_version_id,
        params={"text": "shared"},
    )
    done = alice.wait_for_run_completion(run.run_id, timeout=120, sleep_duration=0.2)
    assert done.state == "SUCCEEDED"
    # only a cluster admin writes a shared pipeline
    assert status_of(lambda: alice.upload_pipeline(str(package), unique("mine-shared"))) == 403
    assert status_of(lambda: alice.delete_pipeline(shared.pipeline_id)) == 403
    with as_user(server, tokens[ALICE]) as http:
        answer = http.post(
            f"{KFP}/pipelines/{shared.pipeline_id}/versions",
            json={"name": "v2", "pipeline_spec": version.pipeline_spec},
        )
        assert answer.status_code == 403

    # a namespaced pipeline is alice's: bob neither reads nor runs it
    private = alice.upload_pipeline(str(package), unique("private"), namespace="alice-ns")
    assert private.namespace == "alice-ns"
    assert alice.get_pipeline(private.pipeline_id).pipeline_id == private.pipeline_id
    assert private.pipeline_id in {
        p.pipeline_id for p in alice.list_pipelines(namespace="alice-ns").pipelines
    }
    assert private.pipeline_id not in {p.pipeline_id for p in bob.list_pipelines().pipelines}
    assert status_of(lambda: bob.get_pipeline(private.pipeline_id)) == 403
    assert status_of(lambda: bob.list_pipeline_versions(private.pipeline_id)) == 403
    assert status_of(lambda: bob.list_pipelines(namespace="alice-ns")) == 403
    (private_version,) = alice.list_pipeline_versions(private.pipeline_id).pipeline_versions
    bob_experiment = bob.create_experiment(unique("bobs"), namespace="bob-ns")
    assert (
        status_of(
            lambda: bob.run_pipeline(
                bob_experiment.experiment_id,
                "borrowed",
                pipeline_id=private.pipeline_id,
                version_id=private_version.pipeline_version_id,
            )
        )
        == 403
    )
    assert status_of(lambda: bob.delete_pipeline(private.pipeline_id)) == 403
    alice.pipelines.pipeline_service_delete_pipeline(pipeline_id=private.pipeline_id, cascade=True)
    assert status_of(lambda: alice.get_pipeline(private.pipeline_id)) == 404


def test_recurring_runs_belong_to_a_namespace(
    server: Server, tokens: dict[str, str], alice_run: tuple[Any, Any], tmp_path: Path
) -> None:
    experiment, _ = alice_run
    package = tmp_path / "writer.yaml"
    compiler.Compiler().compile(writer, str(package))
    alice = client_as(server, tokens[ALICE], "alice-ns")
    bob = client_as(server, tokens[BOB], "bob-ns")
    recurring = alice.create_recurring_run(
        experiment.experiment_id,
        unique("nightly"),
        cron_expression="0 0 0 * * *",
        pipeline_package_path=str(package),
        enabled=False,
    )
    assert recurring.namespace == "alice-ns"
    mine = alice.list_recurring_runs(experiment_id=experiment.experiment_id).recurring_runs
    assert [r.recurring_run_id for r in mine] == [recurring.recurring_run_id]
    assert not [
        r
        for r in client_as(server, tokens[BOB]).list_recurring_runs().recurring_runs or []
        if r.recurring_run_id == recurring.recurring_run_id
    ]
    assert status_of(lambda: bob.get_recurring_run(recurring.recurring_run_id)) == 403
    assert status_of(lambda: bob.enable_recurring_run(recurring.recurring_run_id)) == 403
    assert status_of(lambda: bob.delete_recurring_run(recurring.recurring_run_id)) == 403
    assert alice.get_recurring_run(recurring.recurring_run_id).status == "DISABLED"
    alice.delete_recurring_run(recurring.recurring_run_id)
    assert status_of(lambda: alice.get_recurring_run(recurring.recurring_run_id)) == 404


def test_every_route_of_the_capability_declares_its_access() -> None:
    routes = list(routes_of([*routers.kfp().routes, *routers.pipeline_runs().routes]))
    assert len(routes) > 30
    undeclared = [r.path for r in routes if rule_of(r.endpoint) is None]
    assert undeclared == []
    public = [r.path for r in routes if rule_of(r.endpoint) is PUBLIC]
    assert public == ["/apis/v2beta1/healthz"]
