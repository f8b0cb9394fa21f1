"""Ketch on a Ray cluster whose nodes have addresses of their own, as nodes on separate
machines do (``ketch ray up --address-per-node``: node i on 127.0.0.<i+1>), and which
loses a node while work runs on it.

- A pipeline root on the control plane's disk that the nodes do not share is refused
  when the run is submitted, naming the field and what to do; a root under the
  folders declared shared (``KETCH_SHARED_PATHS``) carries a task's artifact to the
  next task.
- GPUs (declared, one per node: none is real here) are handed out per process: each
  pod asking for ``nvidia.com/gpu: 1`` gets its node's device in
  ``CUDA_VISIBLE_DEVICES``, a pod asking for none gets none.
- An MPIJob's ranks run on its workers' nodes (OpenMPI through the launcher's remote
  shell), and allreduce.
- A node killed (its raylet, SIGKILL) takes its processes with it: the Job's pod on it
  fails, saying the node was lost, and the Job's replacement pod runs on a node that
  is still there, so the Job completes; a pipeline task there is retried elsewhere;
  then, a node killed under a model server's replica: another takes its place on the
  node left, and the service answers.

The cluster and the server here are this module's own (it breaks a node); the tests
share the Ray tests' xdist group so that one worker runs Ray clusters at a time.
"""

import ctypes.util
import importlib.util
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kfp import dsl

from ketch.core.backend.ray.backend import SHARED_PATHS_ENV, unreachable
from ketch.core.backend.ray.placement import NodeInfo
from ketch.pipelines import spec as ir_loader
from tests.core.backend.conftest import RAY, batch_job, ketch_ray, pods
from tests.jobs.conftest import wait_for as wait_for_job
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server
from tests.serving.test_inferenceservice_helpers import V2_BODY, unique
from tests.serving.test_inferenceservice_helpers import apply as apply_service
from tests.serving.test_inferenceservice_helpers import delete as delete_service
from tests.serving.test_inferenceservice_helpers import manifest as service
from tests.serving.test_inferenceservice_helpers import wait_for as wait_for_service
from tests.waiting import wait_for

pytestmark = RAY
RUNS = "/apis/v2beta1/runs"


@dataclass
class Machines:
    """The cluster ``ketch ray up --address-per-node`` started, as its state file says."""

    address: str
    nodes: list[str]  # Ray node IDs, the head's first
    addresses: list[str]
    raylets: dict[str, int]  # node ID -> its raylet's process id


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'ketch[ray]'; make install installs it)")
    home = tmp_path_factory.mktemp("ray-machines")
    started = ketch_ray(
        home,
        "up",
        "--nodes",
        "3",
        "--cpus-per-node",
        "1",
        "--gpus-per-node",
        "1",
        "--address-per-node",
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert "KETCH_SHARED_PATHS" in started.stdout
    state = json.loads((home / "ray" / "cluster.json").read_text())
    try:
        yield Machines(
            state["address"],
            list(state["nodes"]),
            list(state["addresses"]),
            {k: int(v) for k, v in state["raylets"].items()},
        )
    finally:
        stopped = ketch_ray(home, "down", timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def server(machines: Machines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ketch-on-machines")
    yield from serve(
        Server(
            home,
            extra_env={**SERVER_ENV, SHARED_PATHS_ENV: str(home)},
            args=("--backend", "ray", "--ray-address", machines.address),
        )
    )


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_the_cluster_has_one_address_per_node(machines: Machines) -> None:
    assert machines.addresses[0] == "127.0.0.1"  # the head
    assert sorted(machines.addresses) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert set(machines.raylets) == set(machines.nodes)


def test_paths_count_as_reachable_on_one_machine_or_under_a_shared_folder(tmp_path: Path) -> None:
    one = [NodeInfo("a", "10.0.0.1", {}), NodeInfo("b", "10.0.0.1", {})]
    two = [*one, NodeInfo("c", "10.0.0.2", {}), NodeInfo("d", "10.0.0.3", {}, alive=False)]
    assert unreachable(one, tmp_path, ()) is None
    problem = unreachable(two, tmp_path / "root", ())
    assert problem is not None
    assert str(tmp_path / "root") in problem and "2 machines" in problem
    assert SHARED_PATHS_ENV in problem
    assert unreachable(two, tmp_path / "root" / "x", (tmp_path,)) is None
    assert unreachable(two, tmp_path / ".." / "elsewhere", (tmp_path,)) is not None
    # a dead node's machine does not count
    assert unreachable([*one, NodeInfo("d", "10.0.0.3", {}, alive=False)], tmp_path, ()) is None


@dsl.component
def write_text(text: str, data: dsl.Output[dsl.Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write(text)


@dsl.component
def read_text(data: dsl.Input[dsl.Dataset]) -> str:
    with open(data.path) as f:
        return f.read().upper()


@dsl.pipeline(name="ray-machines-artifact")
def artifact_pipeline(text: str = "through the shared root") -> str:
    return read_text(data=write_text(text=text).outputs["data"]).output


def test_a_node_local_pipeline_root_is_refused_and_a_shared_one_carries_artifacts(
    api: httpx.Client, server: Server, machines: Machines, tmp_path: Path
) -> None:
    spec = ir_loader.load(artifact_pipeline).spec
    elsewhere = tmp_path / "root"  # the test's folder: not under the shared folders
    refused = api.post(
        RUNS,
        json={
            "display_name": "x",
            "pipeline_spec": spec,
            "runtime_config": {"pipeline_root": str(elsewhere)},
        },
    )
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert "pipeline root" in message and str(elsewhere) in message
    assert SHARED_PATHS_ENV in message and "3 machines" in message and "s3://" in message
    assert not elsewhere.exists()

    shared = server.home / "artifacts-shared"
    created = api.post(
        RUNS,
        json={
            "display_name": "shared",
            "pipeline_spec": spec,
            "runtime_config": {"pipeline_root": str(shared), "parameters": {"text": "hello"}},
        },
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["run_id"]

    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"{RUNS}/{run_id}").json()
        return run if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED") else None

    run = wait_for(ended, 300, interval=0.5, what="the run to end")
    assert run is not None and run["state"] == "SUCCEEDED", run
    written = [p for p in shared.rglob("data") if p.is_file()]
    assert [p.read_text() for p in written] == ["hello"]
    # the tasks' pods say the node and the address each ran at
    found = pods(api, "default", f"pipeline/runid={run_id}")
    assert len(found) == 2
    for pod in found:
        node = pod["spec"]["nodeName"]
        assert node in machines.nodes, node
        assert pod["status"]["podIP"] == machines.addresses[machines.nodes.index(node)]


# each rank says where it ran and what OpenMPI told it, after an allreduce of rank + 1
# through libmpi's C API (no mpi4py needed)
RANK_SCRIPT = """
import ctypes, json, os, sys
mpi = ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)
handle = lambda symbol: ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(mpi, symbol)))
assert mpi.MPI_Init(None, None) == 0
world = handle("ompi_mpi_comm_world")
rank = ctypes.c_int()
mpi.MPI_Comm_rank(world, ctypes.byref(rank))
send, total = ctypes.c_int(rank.value + 1), ctypes.c_int()
mpi.MPI_Allreduce(ctypes.byref(send), ctypes.byref(total), 1, handle("ompi_mpi_int"),
                  handle("ompi_mpi_op_sum"), world)
with open(os.path.join(sys.argv[1], f"rank-{rank.value}.json"), "w") as out:
    json.dump({"sum": total.value, "node": os.environ.get("KETCH_NODE_NAME"),
               "host": os.environ.get("KETCH_NODE_HOST"), "role": os.environ.get("ROLE")}, out)
mpi.MPI_Finalize()
"""


def test_an_mpijob_starts_its_ranks_on_its_workers_nodes(
    api: httpx.Client, machines: Machines, server: Server
) -> None:
    mpirun = shutil.which("mpirun")
    library = ctypes.util.find_library("mpi")
    if mpirun is None or library is None:
        pytest.skip("OpenMPI is not installed: scripts/ci-mpi.sh installs it (openmpi-bin)")
    ns = f"t-{uuid.uuid4().hex[:8]}"
    out = server.home / f"ranks-{ns}"  # under the shared folder: every node writes there
    out.mkdir()

    def replica(count: int, role: str, command: list[str] | None) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": "mpi",
            "image": "mpioperator/openmpi",
            "env": [{"name": "ROLE", "value": role}],
            "resources": {"requests": {"cpu": "100m"}},
        }
        if command:
            container["command"] = command
        return {
            "replicas": count,
            "template": {
                "metadata": {"annotations": {"ketch.dev/placement": "spread"}},
                "spec": {"containers": [container]},
            },
        }

    launch = ["mpirun", "-np", "2", sys.executable, "-c", RANK_SCRIPT, str(out), library]
    manifest = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "metadata": {"name": "ranks", "namespace": ns},
        "spec": {
            "slotsPerWorker": 1,
            "mpiReplicaSpecs": {
                "Launcher": replica(1, "launcher", launch),
                "Worker": replica(2, "worker", None),
            },
        },
    }
    created = api.post(f"/apis/kubeflow.org/v1/namespaces/{ns}/mpijobs", json=manifest)
    assert created.status_code == 201, created.text

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/apis/kubeflow.org/v1/namespaces/{ns}/mpijobs/ranks").json()
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        return job if "True" in (conditions.get("Succeeded"), conditions.get("Failed")) else None

    job = wait_for(ended, 300, interval=0.5, what="the MPIJob to end")
    assert job is not None
    found = pods(api, ns, "training.kubeflow.org/job-name=ranks")
    where = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in found}
    launcher_log = api.get(f"/api/v1/namespaces/{ns}/pods/ranks-launcher-0/log").text
    conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conditions.get("Succeeded") == "True", launcher_log
    workers = {where["ranks-worker-0"], where["ranks-worker-1"]}
    assert len(workers) == 2  # spread: two nodes
    ranks = [json.loads((out / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["sum"] for r in ranks] == [3, 3]  # the allreduce went between the ranks
    assert {r["node"] for r in ranks} == workers  # each rank on a worker's node
    assert {r["host"] for r in ranks} == {
        machines.addresses[machines.nodes.index(n)] for n in workers
    }
    assert {r["role"] for r in ranks} == {"worker"}  # in the worker's environment
    api.delete(f"/apis/kubeflow.org/v1/namespaces/{ns}/mpijobs/ranks")


def test_a_trainjobs_mpi_ranks_run_on_its_node_replicas_nodes(
    api: httpx.Client, machines: Machines, server: Server
) -> None:
    mpirun = shutil.which("mpirun")
    library = ctypes.util.find_library("mpi")
    if mpirun is None or library is None:
        pytest.skip("OpenMPI is not installed: scripts/ci-mpi.sh installs it (openmpi-bin)")
    ns = f"t-{uuid.uuid4().hex[:8]}"
    trainer = "/apis/trainer.kubeflow.org/v1alpha1"
    out = server.home / f"trainjob-ranks-{ns}"  # under the shared folder
    out.mkdir()
    # the built-in MPI runtime, its replicas spread over the nodes
    builtin = api.get(f"{trainer}/clustertrainingruntimes/mpi-distributed")
    assert builtin.status_code == 200, builtin.text
    spec = builtin.json()["spec"]
    for rjob in spec["template"]["spec"]["replicatedJobs"]:
        pod = rjob["template"]["spec"]["template"]
        pod.setdefault("metadata", {}).setdefault("annotations", {})["ketch.dev/placement"] = (
            "spread"
        )
    runtime = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainingRuntime",
        "metadata": {"name": "mpi-spread", "namespace": ns},
        "spec": spec,
    }
    created = api.post(f"{trainer}/namespaces/{ns}/trainingruntimes", json=runtime)
    assert created.status_code == 201, created.text
    command = ["mpirun", "-np", "2", sys.executable, "-c", RANK_SCRIPT, str(out), library]
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "ranks", "namespace": ns},
        "spec": {
            "runtimeRef": {"name": "mpi-spread", "kind": "TrainingRuntime"},
            "trainer": {"command": command, "numNodes": 2},
        },
    }
    created = api.post(f"{trainer}/namespaces/{ns}/trainjobs", json=job)
    assert created.status_code == 201, created.text

    def ended() -> dict[str, Any] | None:
        found: dict[str, Any] = api.get(f"{trainer}/namespaces/{ns}/trainjobs/ranks").json()
        conditions = {c["type"]: c["status"] for c in found.get("status", {}).get("conditions", [])}
        return found if "True" in (conditions.get("Complete"), conditions.get("Failed")) else None

    done = wait_for(ended, 300, interval=0.5, what="the TrainJob to end")
    assert done is not None
    conditions = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    launcher = pods(api, ns, "jobset.sigs.k8s.io/replicatedjob-name=launcher")
    log = (
        api.get(f"/api/v1/namespaces/{ns}/pods/{launcher[0]['metadata']['name']}/log").text
        if launcher
        else ""
    )
    assert conditions.get("Complete") == "True", (done["status"], log)
    ranks = [json.loads((out / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["sum"] for r in ranks] == [3, 3]  # the allreduce went between the ranks
    nodes = {r["node"] for r in ranks}
    assert len(nodes) == 2 and nodes <= set(machines.nodes), ranks  # two nodes
    api.delete(f"{trainer}/namespaces/{ns}/trainjobs/ranks")


def test_each_pod_asking_for_a_gpu_gets_one_of_its_nodes(
    api: httpx.Client, machines: Machines
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    script = "import os; print('devices', repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"
    command = [sys.executable, "-c", script]
    one = {"limits": {"nvidia.com/gpu": "1"}}
    two = {"limits": {"nvidia.com/gpu": "2"}}
    for manifest in (
        batch_job(ns, "gpu", command, 2, resources=one),
        batch_job(ns, "cpu", command, 1),
        batch_job(ns, "greedy", command, 1, resources=two),
    ):
        created = api.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=manifest)
        assert created.status_code == 201, created.text

    def succeeded(name: str, count: int) -> list[dict[str, Any]] | None:
        found = [
            p for p in pods(api, ns, f"job-name={name}") if p["status"].get("phase") == "Succeeded"
        ]
        return found if len(found) == count else None

    gpu = wait_for(lambda: succeeded("gpu", 2), 300, interval=0.3, what="the GPU pods to succeed")
    cpu = wait_for(lambda: succeeded("cpu", 1), 300, interval=0.3, what="the CPU pod to succeed")
    assert gpu is not None and cpu is not None
    for pod in gpu:
        log = api.get(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log").text
        assert log == "devices '0'\n", log  # the one device of its node
    log = api.get(f"/api/v1/namespaces/{ns}/pods/{cpu[0]['metadata']['name']}/log").text
    assert log == "devices ''\n", log
    # two GPUs on one node: no node has them, so the pod waits saying what is lacking

    def waiting() -> list[dict[str, Any]] | None:
        events = api.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
        found = [e for e in events if e["involvedObject"]["name"].startswith("greedy")]
        return found if any("nvidia.com/gpu" in e.get("message", "") for e in found) else None

    assert wait_for(waiting, 120, interval=0.5, what="an event saying the GPUs are lacking")
    assert not succeeded("greedy", 1)
    for name in ("gpu", "cpu", "greedy"):
        api.delete(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")


# last: the cluster has one node less after it


@dsl.component
def hold(item: int, go: str) -> str:
    import os
    import pathlib
    import time

    print("item", item, "on", os.environ["KETCH_NODE_HOST"], flush=True)
    while not pathlib.Path(go).exists():
        time.sleep(0.1)
    return os.environ["KETCH_NODE_NAME"]


@dsl.pipeline(name="ray-machines-survivor")
def survivor_pipeline(go: str) -> None:
    with dsl.ParallelFor([0, 1, 2]) as item:
        hold(item=item, go=go).set_retry(num_retries=2, backoff_duration="1s")


def test_a_lost_node_takes_its_processes_and_their_controllers_start_them_elsewhere(
    api: httpx.Client, machines: Machines, tmp_path: Path
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    script = (
        "import os, pathlib, time\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "print('on', os.environ['KETCH_NODE_HOST'], flush=True)\n"
        "while not go.exists():\n"
        "    time.sleep(0.1)\n"
    )
    manifest_command = [sys.executable, "-c", script]
    manifest = batch_job(ns, "survivor", manifest_command, 3, backoffLimit=3)
    created = api.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=manifest)
    assert created.status_code == 201, created.text
    submitted = api.post(
        RUNS,
        json={
            "display_name": "survivor",
            "pipeline_spec": ir_loader.load(survivor_pipeline).spec,
            "runtime_config": {"parameters": {"go": str(go)}},
        },
    )
    assert submitted.status_code == 200, submitted.text
    run_id = submitted.json()["run_id"]
    replica = {
        "replicas": 1,
        "restartPolicy": "OnFailure",
        "template": {
            "metadata": {"annotations": {"ketch.dev/placement": "spread"}},
            "spec": {
                "containers": [
                    {"name": "pytorch", "image": "pytorch/pytorch", "command": manifest_command}
                ]
            },
        },
    }
    gang = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "gang", "namespace": ns},
        "spec": {"pytorchReplicaSpecs": {"Master": replica, "Worker": {**replica, "replicas": 2}}},
    }
    created = api.post(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", json=gang)
    assert created.status_code == 201, created.text

    def job_pods() -> list[dict[str, Any]]:
        return pods(api, ns, "job-name=survivor")

    def gang_pods() -> list[dict[str, Any]]:
        return pods(api, ns, "training.kubeflow.org/job-name=gang")

    def task_pods() -> list[dict[str, Any]]:
        return pods(api, "default", f"pipeline/runid={run_id}")

    def three_running(found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        running = [p for p in found if p["status"].get("phase") == "Running"]
        return running if len(running) == 3 else None

    jobs = wait_for(lambda: three_running(job_pods()), 300, interval=0.3, what="3 Job pods")
    tasks = wait_for(lambda: three_running(task_pods()), 300, interval=0.3, what="3 tasks")
    members = wait_for(lambda: three_running(gang_pods()), 300, interval=0.3, what="the gang")
    assert jobs is not None and tasks is not None and members is not None
    head = machines.nodes[0]  # the control plane talks to Ray through the head's raylet
    on_job = {p["spec"]["nodeName"] for p in jobs}
    on_task = {p["spec"]["nodeName"] for p in tasks}
    on_gang = {p["spec"]["nodeName"] for p in members}
    assert len(on_gang) == 3, on_gang  # spread: one replica per node
    candidates = sorted((on_job & on_task) - {head})
    assert candidates, (on_job, on_task)  # processes spread over the nodes
    lost_node = candidates[0]
    lost_address = machines.addresses[machines.nodes.index(lost_node)]
    victim = next(p for p in jobs if p["spec"]["nodeName"] == lost_node)
    task = next(p for p in tasks if p["spec"]["nodeName"] == lost_node)
    member = next(p for p in members if p["spec"]["nodeName"] == lost_node)
    assert victim["status"]["podIP"] == task["status"]["podIP"] == lost_address
    os.kill(machines.raylets[lost_node], signal.SIGKILL)

    def failed() -> dict[str, Any] | None:
        for pod in job_pods():
            if pod["metadata"]["name"] == victim["metadata"]["name"]:
                return pod if pod["status"].get("phase") == "Failed" else None
        return None

    wait_for(failed, 180, interval=0.3, what="the Job's pod on the lost node to fail")
    log = api.get(f"/api/v1/namespaces/{ns}/pods/{victim['metadata']['name']}/log").text
    assert f"on {lost_address}" in log and "was lost" in log, log

    # the Job replaces its pod, and the pipeline retries its task, on the nodes left
    def moved(found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        running = three_running(found)
        if running is None or any(p["spec"]["nodeName"] == lost_node for p in running):
            return None
        return running

    assert wait_for(lambda: moved(job_pods()), 300, interval=0.3, what="a replacement pod")
    retried = wait_for(lambda: moved(task_pods()), 300, interval=0.3, what="the task retried")
    assert retried is not None
    again = next(p for p in retried if p["metadata"]["name"] == task["metadata"]["name"])
    assert again["status"]["containerStatuses"][0]["restartCount"] >= 1
    # the gang's replica restarts (OnFailure) where Ray reserves its bundle again
    placed = wait_for(lambda: moved(gang_pods()), 300, interval=0.3, what="the replica moved")
    assert placed is not None
    restarted = next(p for p in placed if p["metadata"]["name"] == member["metadata"]["name"])
    assert restarted["status"]["containerStatuses"][0]["restartCount"] >= 1
    go.touch()

    def complete() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/survivor").json()
        return job if job.get("status", {}).get("succeeded") == 3 else None

    job = wait_for(complete, 300, interval=0.3, what="the Job to complete")
    assert job is not None and job["status"].get("failed") == 1

    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"{RUNS}/{run_id}").json()
        return run if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED") else None

    run = wait_for(ended, 300, interval=0.5, what="the run to end")
    assert run is not None and run["state"] == "SUCCEEDED", run
    wait_for_job(api, "PyTorchJob", ns, "gang", "Succeeded", timeout=300)
    api.delete(f"/apis/batch/v1/namespaces/{ns}/jobs/survivor")
    api.delete(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/gang")


def test_a_lost_nodes_model_server_replica_is_replaced_on_a_node_left(
    api: httpx.Client, machines: Machines, server: Server
) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = server.home / "models" / "iris"  # under the shared folder: every node reads it
    folder.mkdir(parents=True)
    features, labels = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), folder / "model.joblib")
    name = unique("iris")
    predictor = {"minReplicas": 2, "maxReplicas": 2, "sklearn": {"storageUri": f"file://{folder}"}}
    apply_service(api, service(name, predictor))
    selector = f"serving.kserve.io/inferenceservice={name}"

    def ready(doc: dict[str, Any]) -> bool:
        replicas = doc.get("status", {}).get("ketch", {}).get("replicas", [])
        return len([r for r in replicas if r["ready"]]) == 2

    doc = wait_for_service(api, name, ready, timeout=300)
    head = machines.nodes[0]
    first = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(api, "default", selector)}
    lost = sorted(set(first.values()) - {head})
    assert lost, first  # one replica per node: one is not on the head
    lost_node = lost[0]
    os.kill(machines.raylets[lost_node], signal.SIGKILL)

    def replaced(doc: dict[str, Any]) -> bool:
        now = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(api, "default", selector)}
        return ready(doc) and lost_node not in now.values() and set(now) != set(first)

    doc = wait_for_service(api, name, replaced, timeout=300)
    with httpx.Client(timeout=60.0) as router:
        for _ in range(4):
            answer = router.post(f"{doc['status']['url']}/v2/models/{name}/infer", json=V2_BODY)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [0]
    delete_service(api, name)
