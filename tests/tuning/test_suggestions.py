"""Katib's Suggestion objects, kept by the Experiment controller, read through a real
``ketch up``: the API, the ``kubernetes`` client (what Katib's client calls) and
Ketch's TuningClient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from ketch.tuning.client import TuningClient
from tests.server import fixtures
from tests.server.helpers import Server
from tests.tuning.conftest import experiment
from tests.waiting import wait_for

server = fixtures.server  # a real ``ketch up`` per database, shared by the session
ns = fixtures.ns
client = fixtures.client

pytestmark = pytest.mark.slow


def _api(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def _finished(http: httpx.Client, namespace: str, name: str) -> dict[str, Any] | None:
    body = http.get(_api(namespace, "experiments", name)).json()
    for condition in body.get("status", {}).get("conditions", []):
        if condition["type"] in ("Succeeded", "Failed") and condition["status"] == "True":
            return dict(body)
    return None


def _conditions(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in document.get("status", {}).get("conditions", [])}


def _suggestion_settled(
    http: httpx.Client, namespace: str, name: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        response = http.get(_api(namespace, "suggestions", name))
        if response.status_code != 200:
            return None
        body = dict(response.json())
        return body if check(body) else None

    return dict(wait_for(probe, 120, 0.1, what=f"suggestion {namespace}/{name} settled"))


def test_an_experiment_keeps_its_suggestion_and_deletes_it_with_itself(
    server: Server, client: httpx.Client, ns: str
) -> None:
    name = "suggested"
    manifest = experiment(name, algorithm="random", max_trials=3, parallel=2)
    created = client.put(_api(ns, "experiments", name), json=manifest)
    assert created.status_code == 201, created.text
    wait_for(lambda: _finished(client, ns, name), 120, 0.1, what=f"experiment {name} finished")

    suggestion = _suggestion_settled(client, ns, name, lambda s: "Succeeded" in _conditions(s))
    meta = suggestion["metadata"]
    assert meta["name"] == name and meta["namespace"] == ns
    assert meta["labels"]["katib.kubeflow.org/experiment"] == name
    owner_uid = client.get(_api(ns, "experiments", name)).json()["metadata"]["uid"]
    assert [
        (o["kind"], o["name"], o["uid"], o.get("controller")) for o in meta["ownerReferences"]
    ] == [("Experiment", name, owner_uid, True)]
    assert suggestion["spec"]["algorithm"]["algorithmName"] == "random"
    assert suggestion["spec"]["requests"] == 3

    status = suggestion["status"]
    trials = client.get(
        _api(ns, "trials"), params={"labelSelector": f"katib.kubeflow.org/experiment={name}"}
    ).json()["items"]
    assert status["suggestionCount"] == len(trials) == 3
    by_trial = {t["metadata"]["name"]: t["spec"]["parameterAssignments"] for t in trials}
    assert {s["name"]: s["parameterAssignments"] for s in status["suggestions"]} == by_trial
    for entry in status["suggestions"]:
        assert [a["name"] for a in entry["parameterAssignments"]] == ["x", "y"]

    conditions = _conditions(suggestion)
    assert conditions["Created"]["status"] == "True"
    assert conditions["Created"]["reason"] == "SuggestionCreated"
    # resumePolicy Never (the default): a completed experiment's suggestion succeeds
    assert conditions["Running"]["status"] == "False"
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Succeeded"]["message"] == "Suggestion is succeeded, can't be restarted"

    # what Katib's KatibClient.get_suggestion calls: the kubernetes client's custom objects
    api_client = k8s.ApiClient(k8s.Configuration(host=server.url))
    try:
        read = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "kubeflow.org", "v1beta1", ns, "suggestions", name
        )
    finally:
        api_client.close()
    assert read["status"]["suggestionCount"] == 3
    assert TuningClient(server.url).get_suggestion(name, ns)["spec"]["requests"] == 3

    assert client.delete(_api(ns, "experiments", name)).status_code == 200
    wait_for(
        lambda: client.get(_api(ns, "suggestions", name)).status_code == 404,
        30,
        0.1,
        what=f"suggestion {name} is deleted with its experiment",
    )


def test_a_long_running_experiments_suggestion_keeps_running(client: httpx.Client, ns: str) -> None:
    name = "long-running"
    manifest = experiment(
        name, max_trials=2, parallel=2, resumePolicy="LongRunning", maxFailedTrialCount=1
    )
    assert client.put(_api(ns, "experiments", name), json=manifest).status_code == 201
    wait_for(lambda: _finished(client, ns, name), 120, 0.1, what=f"experiment {name} finished")
    suggestion = _suggestion_settled(
        client, ns, name, lambda s: s["status"].get("suggestionCount") == 2
    )
    conditions = _conditions(suggestion)
    assert conditions["Running"]["status"] == "True"
    assert conditions["Running"]["reason"] == "SuggestionRunning"
    assert "Succeeded" not in conditions
    client.delete(_api(ns, "experiments", name))


def test_a_deleted_suggestion_is_written_again(client: httpx.Client, ns: str) -> None:
    name = "rewritten"
    manifest = experiment(name, max_trials=2, parallel=1, maxFailedTrialCount=1)
    assert client.put(_api(ns, "experiments", name), json=manifest).status_code == 201
    wait_for(lambda: _finished(client, ns, name), 120, 0.1, what=f"experiment {name} finished")
    first = _suggestion_settled(client, ns, name, lambda s: s["status"].get("suggestionCount") == 2)
    assert client.delete(_api(ns, "suggestions", name)).status_code == 200
    again = _suggestion_settled(
        client, ns, name, lambda s: s["metadata"]["uid"] != first["metadata"]["uid"]
    )
    assert again["status"]["suggestions"] == first["status"]["suggestions"]
    client.delete(_api(ns, "experiments", name))


def test_users_cannot_create_suggestions(client: httpx.Client, ns: str) -> None:
    manifest = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Suggestion",
        "metadata": {"name": "mine"},
        "spec": {"algorithm": {"algorithmName": "random"}, "requests": 3},
    }
    for response in (
        client.put(_api(ns, "suggestions", "mine"), json=manifest),
        client.post(_api(ns, "suggestions"), json=manifest),
    ):
        assert response.status_code == 422, response.text
        text = response.json()["message"]
        assert "metadata.ownerReferences" in text and "Experiment" in text
    assert client.get(_api(ns, "suggestions", "mine")).status_code == 404
