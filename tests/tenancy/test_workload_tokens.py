"""The workloads Ketch starts call back into the API as their namespace's
``default-editor`` service account, through a real ``ketch up`` with authentication
on: a Katib trial pushes its metrics over HTTP with the ``KETCH_TOKEN`` it was given
(in its environment only: no manifest, pod or log shows it), and that account edits
its own namespace and nothing else. Service accounts are not people: they neither
turn authentication on nor show in the list of users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import Directory
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, wait_until
from tests.tenancy.helpers import add_users, as_user, directory_of, profile
from tests.tuning.conftest import experiment

ADMIN, OWNER = "admin@example.com", "owner@example.com"
NAMESPACE, OTHER = "team-trials", "team-other"
TOKEN = re.compile(r"ketch_[\w-]{40,}")

PUSH = (
    "import os, sys\n"
    "from ketch.tuning.metrics import report_metrics\n"
    "assert os.environ.get('KETCH_TOKEN', '').startswith('ketch_'), 'no token'\n"
    "os.environ.pop('KETCH_TRIAL_METRICS_FILE')  # as a trial on another host: over HTTP\n"
    "os.environ['KETCH_TUNING_PUSH_URL'] = (os.environ['SERVER'] + '/apis/tuning.ketch.dev/v1'\n"
    '    f\'/namespaces/{os.environ["NAMESPACE"]}/trials/{os.environ["KATIB_TRIAL_NAME"]}\'\n'
    "    '/metrics')\n"
    "report_metrics({'score': float(sys.argv[1]), 'loss': 0.5})\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(Server(tmp_path_factory.mktemp("ketch-workloads"), extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    made = add_users(directory, (ADMIN, OWNER), admin=ADMIN)
    store = server.store()
    for namespace in (NAMESPACE, OTHER):
        store.apply(profile(namespace, OWNER))
    return made


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def test_service_accounts_are_not_people(tmp_path: Any) -> None:
    database = Database(f"sqlite:///{tmp_path / 'ketch.db'}")
    try:
        database.migrate([MIGRATIONS])
        directory = Directory(database)
        secret = directory.service_account_token("team-a")
        assert not directory.has_users(), "a service account turned authentication on"
        assert directory.users() == []
        user = directory.user_for_token(secret)
        assert user.email == "system:serviceaccount:team-a:default-editor"
        assert not user.admin and not user.has_password
        again = directory.service_account_token("team-a")  # the same account, a new token
        assert again != secret
        assert directory.user_for_token(again).id == user.id
        listed = directory.tokens(user.email)
        assert [t.name for t in listed] == ["workload", "workload"]
        assert all(t.expires_at is not None for t in listed)
    finally:
        database.dispose()


def test_a_service_account_edits_its_own_namespace_only(
    server: Server, directory: Directory, tokens: dict[str, str]
) -> None:
    secret = directory.service_account_token(NAMESPACE)
    with as_user(server, secret) as http:
        me = http.get("/auth/whoami").json()
        assert me["user"] == f"system:serviceaccount:{NAMESPACE}:default-editor"
        assert not me["admin"]
        path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"

        def created() -> bool:
            return http.post(path, json=_configmap("from-a-workload")).status_code == 201

        assert wait_until(created, timeout=10)
        assert http.get(f"{path}/from-a-workload").status_code == 200
        # not another namespace, not the contributors of its own, not cluster objects
        other = http.post(f"/api/v1/namespaces/{OTHER}/configmaps", json=_configmap("x"))
        assert other.status_code == 403
        assert http.get(f"/api/v1/namespaces/{OTHER}/configmaps").status_code == 403
        binding = http.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings",
            json={
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "escalate"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kubeflow-admin",
                },
                "subjects": [{"kind": "User", "name": "x@example.com"}],
            },
        )
        assert binding.status_code in (403, 404)
        # a list across namespaces shows its own only
        listed = http.get("/api/v1/configmaps").json()["items"]
        assert {item["metadata"]["namespace"] for item in listed} <= {NAMESPACE}


def test_a_trial_pushes_its_metrics_with_its_namespace_token(
    server: Server, tokens: dict[str, str]
) -> None:
    manifest = experiment(
        "pushed",
        parameters=[
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
        ],
        max_trials=1,
        parallel=1,
        command=["python", "-c", PUSH, "${trialParameters.x}"],
    )
    manifest["metadata"]["namespace"] = NAMESPACE
    manifest["spec"]["maxFailedTrialCount"] = 1
    container = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    container["env"] = [
        {"name": "SERVER", "value": server.url},
        {"name": "NAMESPACE", "value": NAMESPACE},
    ]
    api = f"/apis/kubeflow.org/v1beta1/namespaces/{NAMESPACE}"
    with as_user(server, tokens[OWNER]) as http:
        made = http.post(f"{api}/experiments", json=manifest)
        assert made.status_code == 201, made.text

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = http.get(f"{api}/experiments/pushed").json()
            for condition in body.get("status", {}).get("conditions", []):
                if condition["type"] in ("Succeeded", "Failed") and condition["status"] == "True":
                    return body
            return None

        done = wait_until(finished, timeout=180)
        assert done, http.get(f"{api}/experiments/pushed").json().get("status")
        trials = http.get(f"{api}/trials").json()["items"]
        assert len(trials) == 1
        trial = trials[0]
        states = [c["type"] for c in trial["status"]["conditions"] if c["status"] == "True"]
        assert "Succeeded" in states, trial["status"]
        metrics = {m["name"]: m for m in trial["status"]["observation"]["metrics"]}
        assert float(metrics["loss"]["latest"]) == 0.5
        # the token is in no manifest the API shows, and in no log
        shown = "".join(
            http.get(path).text
            for path in (
                f"{api}/trials",
                f"{api}/experiments/pushed",
                f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
                f"/api/v1/namespaces/{NAMESPACE}/pods",
            )
        )
        assert '"name":"KETCH_TOKEN"' not in shown.replace(" ", "")  # the trial's code names it
        assert not TOKEN.search(shown)
    assert not TOKEN.search(server.output())
