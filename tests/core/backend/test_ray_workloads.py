"""Pipelines, Katib, KServe and notebooks on ``ketch up --backend ray`` (the 3-node
cluster and the server of conftest.py), each through its public API:

- a KFP pipeline (the real ``kfp.Client``) whose ParallelFor's tasks run on at least 2
  Ray nodes, each consumer reading through the pipeline root what its producer wrote;
- a Katib Experiment (random search, 3 trials) whose trials' pods run on the cluster
  and whose metrics are what the trials printed;
- an InferenceService of 2 replicas on 2 Ray nodes, answering V1 and V2 predictions
  through its router;
- a Notebook (``kubeflow.org/v1``) whose JupyterLab runs on a Ray node and answers,
  and runs code in a kernel, through Ketch's ``/notebook/<ns>/<name>/`` proxy.

A task says which node it ran on by walking up its process's ancestors to the Ray
node's raylet (which starts the process runner that started the task): its command
line names the node (``--node_id=``). On a cluster on one machine every node's
address is 127.0.0.1, so the address (``KETCH_NODE_HOST``) cannot tell nodes apart.
"""

# no ``from __future__ import annotations``: kfp reads the components' annotations

import base64
import io
import re
import tarfile
import uuid
from typing import Any

import httpx
import kfp
import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from tests.core.backend.conftest import RAY, RayCluster, pods
from tests.notebooks.helpers import (
    example_notebook,
    execute,
    requires_jupyterlab,
    start_kernel,
    wait_ready,
)
from tests.notebooks.helpers import path as notebook_path
from tests.server.helpers import Server
from tests.serving.test_inferenceservice_helpers import (
    ROW,
    V2_BODY,
    alive,
    apply,
    delete,
    iris_uri,
    manifest,
    unique,
)
from tests.serving.test_inferenceservice_helpers import wait_for as wait_for_service
from tests.tuning.conftest import experiment
from tests.waiting import wait_for

__all__ = ["iris_uri"]  # a fixture

pytestmark = [*RAY, pytest.mark.timeout(600)]

#: the code that finds the Ray node a process runs on: the ``--node_id`` of the raylet
#: among its ancestors (a component's body cannot call a function defined outside it)
RAYLET_NODE = """
def raylet_node(pid):
    for _ in range(12):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read().split(b"\\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return "none"
        for word in words:
            if word.startswith(b"--node_id="):
                return word.split(b"=", 1)[1].decode()
        if parent <= 1:
            return "none"
        pid = parent
    return "none"
"""


# -- a pipeline ----------------------------------------------------------------------


@dsl.component
def pause(item: int) -> None:
    import time

    time.sleep(0.6 * item)


@dsl.component
def produce(item: int, data: Output[Dataset]) -> str:
    import os
    import time

    found: dict = {}
    exec(os.environ["RAYLET_NODE"], found)
    node = found["raylet_node"](os.getpid())
    time.sleep(1.5)  # still running when the next iteration's producer starts
    with open(data.path, "w") as f:
        f.write(f"item {item} made on {node}")
    return node


@dsl.component
def consume(data: Input[Dataset]) -> str:
    import os

    found: dict = {}
    exec(os.environ["RAYLET_NODE"], found)
    with open(data.path) as f:
        return f"{f.read()}; read on {found['raylet_node'](os.getpid())}"


@dsl.pipeline(name="ray-fan-out")
def fan_out() -> None:
    with dsl.ParallelFor([1, 2, 3]) as item:
        # the producers start 0.6 s apart, each on the node then running the fewest of
        # the backend's processes: one still running a producer is not that node (3
        # started at the same instant may all choose the same one)
        paced = pause(item=item)
        made = produce(item=item).after(paced).set_env_variable("RAYLET_NODE", RAYLET_NODE)
        consume(data=made.outputs["data"]).set_env_variable("RAYLET_NODE", RAYLET_NODE)


def _task(api: httpx.Client, run_id: str, task_id: str) -> dict[str, Any]:
    response = api.get(f"/apis/v2beta1/runs/{run_id}/nodes/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _artifact(api: httpx.Client, run_id: str, task_id: str, name: str) -> str:
    """An output artifact's file, as KFP's readArtifact hands it (a gzipped tar)."""
    response = api.get(f"/apis/v2beta1/runs/{run_id}/nodes/{task_id}/artifacts/{name}:read")
    assert response.status_code == 200, response.text
    data = base64.b64decode(response.json()["data"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


def test_a_parallel_for_runs_on_several_nodes_and_passes_artifacts(
    ray_server: Server, api: httpx.Client, ray_cluster: RayCluster
) -> None:
    client = kfp.Client(host=ray_server.url)
    started = client.create_run_from_pipeline_func(fan_out, arguments={})
    run = client.wait_for_run_completion(started.run_id, timeout=400, sleep_duration=0.5)
    assert run.state == "SUCCEEDED", run.error
    details = api.get(f"/apis/v2beta1/runs/{started.run_id}").json()["run_details"]
    tasks = [_task(api, started.run_id, t["task_id"]) for t in details["task_details"]]
    by_path = {t["path"]: t for t in tasks if t["name"] in ("produce", "consume")}
    producers = sorted(p for p in by_path if p.endswith("/produce"))
    assert len(producers) == 3, sorted(by_path)
    nodes = set()
    for path in producers:
        made = by_path[path]
        node = made["outputs"]["parameters"]["Output"]
        assert node in ray_cluster.nodes, (node, ray_cluster.nodes)
        nodes.add(node)
        [written] = made["outputs"]["artifacts"]["data"]
        assert written["uri"].startswith(str(ray_server.home)), written  # the default root
        text = _artifact(api, started.run_id, made["task_id"], "data")
        assert re.fullmatch(rf"item [123] made on {node}", text), text
        read = by_path[path.removesuffix("produce") + "consume"]
        assert read["state"] == "SUCCEEDED"
        [given] = read["inputs"]["artifacts"]["data"]
        assert given["uri"] == written["uri"]
        reader = read["outputs"]["parameters"]["Output"]
        assert reader.startswith(f"{text}; read on "), reader
        assert reader.rsplit(" ", 1)[1] in ray_cluster.nodes
    assert sorted(by_path[p]["inputs"]["parameters"]["item"] for p in producers) == [1, 2, 3]
    assert len(nodes) >= 2, nodes  # started while others ran: on the least busy nodes


# -- a Katib Experiment --------------------------------------------------------------


def test_a_katib_experiment_runs_its_trials_on_the_cluster(
    api: httpx.Client, ray_cluster: RayCluster
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    exp = experiment("ray-random", settings={"random_state": 5}, max_trials=3, parallel=3)
    exp["spec"]["trialTemplate"]["retain"] = True  # the trials' Jobs and pods stay
    base = f"/apis/kubeflow.org/v1beta1/namespaces/{ns}"
    created = api.post(f"{base}/experiments", json=exp)
    assert created.status_code == 201, created.text

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"{base}/experiments/ray-random").json()
        held = {
            c["type"] for c in body.get("status", {}).get("conditions", []) if c["status"] == "True"
        }
        return body if held & {"Succeeded", "Failed"} else None

    done = wait_for(finished, 300, 0.2, what="the Experiment to finish")
    status = done["status"]
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {"Succeeded"}
    assert status["trials"] == status["trialsSucceeded"] == 3, status
    trials = api.get(
        f"{base}/trials", params={"labelSelector": "katib.kubeflow.org/experiment=ray-random"}
    ).json()["items"]
    assert len(trials) == 3
    best = max(
        float(
            next(m for m in t["status"]["observation"]["metrics"] if m["name"] == "score")["latest"]
        )
        for t in trials
    )
    optimal = status["currentOptimalTrial"]["observation"]["metrics"]
    assert float(next(m for m in optimal if m["name"] == "score")["latest"]) == best
    for trial in trials:
        name = trial["metadata"]["name"]
        [pod] = pods(api, ns, f"job-name={name}")
        assert pod["spec"]["nodeName"] in ray_cluster.nodes
        assert pod["status"]["phase"] == "Succeeded"
        log = api.get(
            f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log",
            params={"container": "training-container"},  # beside Katib's metrics collector
        ).text
        printed = re.search(r"score=(-?[\d.]+)", log)
        assert printed, log
        metrics = {m["name"]: m for m in trial["status"]["observation"]["metrics"]}
        assert float(metrics["score"]["latest"]) == pytest.approx(float(printed.group(1)))
        values = {a["name"]: float(a["value"]) for a in trial["spec"]["parameterAssignments"]}
        expected = -((values["x"] - 0.3) ** 2) - (values["y"] - 0.7) ** 2
        assert float(printed.group(1)) == pytest.approx(expected, abs=1e-5)
    assert api.delete(f"{base}/experiments/ray-random").status_code == 200


# -- an InferenceService -------------------------------------------------------------


def test_an_inference_service_spreads_its_replicas_over_nodes(
    api: httpx.Client, ray_cluster: RayCluster, iris_uri: str
) -> None:
    name = unique("iris")
    apply(
        api,
        manifest(name, {"minReplicas": 2, "maxReplicas": 2, "sklearn": {"storageUri": iris_uri}}),
    )

    def both_ready(doc: dict[str, Any]) -> bool:
        replicas = doc.get("status", {}).get("ketch", {}).get("replicas", [])
        return len([r for r in replicas if r["ready"]]) == 2

    doc = wait_for_service(api, name, both_ready, timeout=300)
    found = pods(api, "default", f"serving.kserve.io/inferenceservice={name}")
    assert len(found) == 2
    nodes = {pod["spec"]["nodeName"] for pod in found}
    assert len(nodes) == 2 and nodes <= set(ray_cluster.nodes), nodes
    # each replica listens on its node's address (127.0.0.1 for all on this cluster),
    # where the router reaches it
    listening = {r["name"]: r["url"] for r in doc["status"]["ketch"]["replicas"]}
    for pod in found:
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        ip = pod["status"]["podIP"]
        assert ip.startswith("127.") and listening[pod["metadata"]["name"]].startswith(
            f"http://{ip}:{pod['spec']['containers'][0]['ports'][0]['containerPort']}"
        ), (pod["status"], listening)
    url = doc["status"]["url"]
    with httpx.Client(timeout=60.0) as router:
        for _ in range(6):  # the router spreads the calls over both replicas
            v2 = router.post(f"{url}/v2/models/{name}/infer", json=V2_BODY)
            assert v2.status_code == 200, v2.text
            assert v2.json()["outputs"][0]["data"] == [0]
        v1 = router.post(
            f"{url}/v1/models/{name}:predict", json={"instances": [ROW, [6.7, 3.0, 5.2, 2.3]]}
        )
        assert v1.status_code == 200, v1.text
        assert v1.json() == {"predictions": [0, 2]}
    pids = [r["pid"] for r in doc["status"]["ketch"]["replicas"]]
    delete(api, name)
    assert not any(alive(pid) for pid in pids)
    assert pods(api, "default", f"serving.kserve.io/inferenceservice={name}") == []


# -- a Notebook ----------------------------------------------------------------------


@requires_jupyterlab
def test_a_notebook_runs_on_a_node_behind_the_proxy(
    api: httpx.Client, ray_server: Server, ray_cluster: RayCluster
) -> None:
    ns, name = f"t-{uuid.uuid4().hex[:8]}", "lab"
    notebook = example_notebook(name, ns)
    notebook["apiVersion"] = "kubeflow.org/v1"
    made = api.post(notebook_path(ns), json=notebook)
    assert made.status_code == 201, made.text
    wait_ready(api, ns, name, timeout=240)
    pod = api.get(f"/api/v1/namespaces/{ns}/pods/{name}-0").json()
    node = pod["spec"]["nodeName"]
    assert node in ray_cluster.nodes
    ip = pod["status"]["podIP"]  # its node's address: 127.0.0.1 for all on this cluster
    assert ip.startswith("127."), pod["status"]
    prefix = f"/notebook/{ns}/{name}/"
    answer = api.get(f"{prefix}api/status")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) >= {"connections", "kernels", "last_activity", "started"}
    kernel = start_kernel(api, prefix)
    code = (
        f"{RAYLET_NODE}\nimport os\n(raylet_node(os.getpid()), os.environ.get('KETCH_NODE_HOST'))"
    )
    ran = execute(ray_server.url, prefix, kernel, code)
    assert ran == repr((node, ip)), ran  # the kernel runs where the pod says
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    direct = httpx.get(f"http://{ip}:{port}{prefix}api/status")  # it listens there...
    assert direct.status_code == 403  # ...and answers only with the token the proxy adds
    assert api.delete(notebook_path(ns, name)).status_code == 200
    wait_for(
        lambda: api.get(f"/api/v1/namespaces/{ns}/pods/{name}-0").status_code == 404,
        60,
        0.2,
        what="the notebook's pod to go",
    )
    wait_for(
        lambda: api.get(f"{prefix}api/status").status_code in (404, 503),
        30,
        0.2,
        what="the proxy to stop answering for the deleted notebook",
    )
