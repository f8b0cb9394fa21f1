"""The environment each training operator injects into a replica, per kind.

The variable names and values follow Kubeflow's operators. Two differences: a
replica's address is its node's as the backend gives it (``127.0.0.1`` on the
local backend; the Ray node's address on a Ray cluster) rather than a host name
(``<job>-<type>-<index>``); and ports are allocated free on that node (the kind's
default port when it is free), so several jobs can run at once.

An MPIJob's launcher gets the MPI operator's contract: a hostfile
(``<job>-worker-<i> slots=<slotsPerWorker>``) in ``OMPI_MCA_orte_default_hostfile``
and a remote shell in ``OMPI_MCA_plm_rsh_agent`` (Intel MPI's ``I_MPI_HYDRA_*``
likewise), so a plain ``mpirun -np N ...`` starts its ranks "on" the workers: the
agent runs OpenMPI's daemon in the worker's environment, here, or on the worker's
node where the backend has several (then the launcher starts every daemon itself:
``OMPI_MCA_plm_rsh_no_tree_spawn``). The launcher also
gets ``OMPI_MCA_hwloc_base_binding_policy=none`` (the workers share this machine's
cores, so per-host binding would pile ranks onto core 0) and, when the server runs
as root, ``OMPI_ALLOW_RUN_AS_ROOT=1`` and ``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1``; a
variable the launcher's container sets itself wins.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ketch.core.backend import Backend
from ketch.core.workloads import rsh
from ketch.core.workloads.gang import Addresses
from ketch.jobs.spec import Job, MPIJobSpec, MXJobSpec, PaddleJobSpec, PyTorchJobSpec, TFJobSpec

DEFAULT_RDZV_PORT = 29400
TF_EVALUATOR = "Evaluator"


def declared_port(job: Job, rtype: str) -> int:
    """The container port named as the operator expects, else the kind's default."""
    container = job.container(rtype)
    for port in container.ports:
        if port.name == job.info.port_name:
            return port.containerPort
    return job.info.default_port


def allocate(job: Job, backend: Backend, workdir: Path) -> Addresses:
    """Ports for every replica of ``job`` (and the rendezvous port of an elastic job),
    reserved through ``backend`` on the node each replica is placed on, and the
    address of each replica's node."""
    addresses = Addresses()
    names = job.replica_names()
    for rtype, _index, name in names:
        placement = job.placement(name)
        addresses.hosts[name] = backend.host_of(placement)
        if job.kind == "MPIJob":
            shell = backend.remote_shell(placement) if rtype == "Worker" else None
            if shell is not None:
                addresses.shells[name] = shell
            continue
        addresses.ports[name] = backend.reserve_port(declared_port(job, rtype), placement)
    spec = job.spec
    if isinstance(spec, PyTorchJobSpec) and spec.elasticPolicy is not None and names:
        # on the first worker's node, where the rendezvous is reached (PET_RDZV_ENDPOINT)
        worker = f"{job.name}-worker-0"
        first = job.placement(worker) if any(n == worker for _t, _i, n in names) else None
        addresses.rdzv_port = backend.reserve_port(
            spec.elasticPolicy.rdzvPort or DEFAULT_RDZV_PORT, first
        )
    if isinstance(spec, MPIJobSpec):
        addresses.hostfile = workdir / "hostfile"
        addresses.rsh_agent = workdir / "kubexec.sh"
    return addresses


def _first(job: Job, *rtypes: str) -> tuple[str, int, str] | None:
    for rtype, index, name in job.replica_names():
        if rtype in rtypes and index == 0:
            return rtype, index, name
    return None


def replica_env(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    """The variables the operator of ``job``'s kind sets on replica ``rtype``/``index``."""
    env = {"PYTHONUNBUFFERED": "1"}
    builder = {
        "PyTorchJob": _pytorch,
        "TFJob": _tf,
        "XGBoostJob": _xgboost,
        "MPIJob": _mpi,
        "JAXJob": _jax,
        "PaddleJob": _paddle,
        "MXJob": _mxnet,
    }[job.kind]
    env.update(builder(job, rtype, index, addresses))
    return env


def nproc_per_node(job: Job) -> str:
    spec = job.spec
    assert isinstance(spec, PyTorchJobSpec)
    if spec.nprocPerNode is not None:
        return str(spec.nprocPerNode)
    if spec.elasticPolicy is not None and spec.elasticPolicy.nProcPerNode is not None:
        return str(spec.elasticPolicy.nProcPerNode)
    return "1"


def _pytorch(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    spec = job.spec
    assert isinstance(spec, PyTorchJobSpec)
    env: dict[str, str] = {}
    nproc = nproc_per_node(job)
    total = job.total_replicas()
    world = total * int(nproc) if nproc.isdigit() else total
    has_master = "Master" in job.replicas
    rank = index + 1 if has_master and rtype == "Worker" else index
    master = _first(job, "Master") or _first(job, "Worker")
    if master is not None:
        port = str(addresses.ports[master[2]])
        env.update(
            MASTER_ADDR=addresses.host(master[2]),
            MASTER_PORT=port,
            PET_MASTER_ADDR=addresses.host(master[2]),
            PET_MASTER_PORT=port,
        )
    env.update(WORLD_SIZE=str(world), RANK=str(rank), PET_NPROC_PER_NODE=nproc)
    policy = spec.elasticPolicy
    if policy is None:
        env.update(PET_NNODES=str(total), PET_NODE_RANK=str(rank))
        return env
    workers = job.replicas["Worker"].replicas
    low = policy.minReplicas or workers
    high = policy.maxReplicas or workers
    rdzv_host = policy.rdzvHost or addresses.host(f"{job.name}-worker-0")
    env.update(
        PET_NNODES=f"{low}:{high}",
        PET_RDZV_BACKEND=policy.rdzvBackend or "c10d",
        PET_RDZV_ENDPOINT=f"{rdzv_host}:{addresses.rdzv_port}",
        PET_RDZV_ID=policy.rdzvId or job.name,
        # a node joining a running group waits forever for the shared store's address
        # (torch reuses round 0's store info on the old nodes): build it every round
        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
    )
    if policy.rdzvConf:
        env["PET_RDZV_CONF"] = ",".join(f"{c.key}={c.value}" for c in policy.rdzvConf)
    if policy.standalone is not None:
        env["PET_STANDALONE"] = str(policy.standalone).lower()
    if policy.maxRestarts is not None:
        env["PET_MAX_RESTARTS"] = str(policy.maxRestarts)
    return env


def tf_config(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, object]:
    """``TF_CONFIG``: the cluster (every type but the evaluator) and this task."""
    cluster: dict[str, list[str]] = {}
    for rt, _i, name in job.replica_names():
        if rt == TF_EVALUATOR:
            continue
        cluster.setdefault(rt.lower(), []).append(f"{addresses.host(name)}:{addresses.ports[name]}")
    return {
        "cluster": cluster,
        "task": {"type": rtype.lower(), "index": index},
        "environment": "cloud",
    }


def _tf(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    assert isinstance(job.spec, TFJobSpec)
    return {"TF_CONFIG": json.dumps(tf_config(job, rtype, index, addresses))}


def _xgboost(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    master = _first(job, "Master")
    env: dict[str, str] = {}
    if master is not None:
        env.update(
            MASTER_ADDR=addresses.host(master[2]), MASTER_PORT=str(addresses.ports[master[2]])
        )
    rank = index + 1 if rtype == "Worker" and master is not None else index
    env.update(WORLD_SIZE=str(job.total_replicas()), RANK=str(rank))
    workers = [
        (name, addresses.ports[name]) for rt, _i, name in job.replica_names() if rt == "Worker"
    ]
    if workers:
        env["WORKER_PORT"] = str(workers[0][1])
        env["WORKER_ADDRS"] = ",".join(addresses.host(name) for name, _p in workers)
    return env


def _jax(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    coordinator = _first(job, "Worker")
    env: dict[str, str] = {}
    if coordinator is not None:
        env.update(
            COORDINATOR_ADDRESS=addresses.host(coordinator[2]),
            COORDINATOR_PORT=str(addresses.ports[coordinator[2]]),
        )
    env.update(NUM_PROCESSES=str(job.total_replicas()), PROCESS_ID=str(index))
    return env


def _paddle(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    """The Paddle operator's env: the rendezvous is master-0 (PS mode) or worker-0
    (collective mode, no Master); in PS mode each pod is one server or one trainer."""
    assert isinstance(job.spec, PaddleJobSpec)
    env = {"PADDLE_JOB_ID": job.name, "PADDLE_NNODES": str(job.total_replicas())}
    ps_mode = "Master" in job.replicas
    rendezvous = _first(job, "Master") if ps_mode else _first(job, "Worker")
    if rendezvous is not None:
        if (rtype, index) == rendezvous[:2]:
            env["POD_IP_DUMMY"] = addresses.host(rendezvous[2])  # the operator's status.podIP
        env["PADDLE_MASTER"] = f"{addresses.host(rendezvous[2])}:{addresses.ports[rendezvous[2]]}"
    if ps_mode:
        env["PADDLE_SERVER_NUM" if rtype == "Master" else "PADDLE_TRAINER_NUM"] = "1"
    return env


#: the pod-template annotation whose value an MXJob's ``MX_CONFIG`` lists per replica type
MX_TUNER_SERVER_KEY = "tuner-server-key"


def mx_config(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, object]:
    """``MX_CONFIG``: every replica by type (lower case) with its address, each type's
    ``tuner-server-key`` annotation, and this task."""
    cluster: dict[str, list[dict[str, object]]] = {}
    labels: dict[str, str] = {}
    for rt in job.replicas:
        cluster[rt.lower()] = []
        annotations = job.replicas[rt].template.metadata.get("annotations") or {}
        labels[rt.lower()] = (
            str(annotations.get(MX_TUNER_SERVER_KEY, "")) if isinstance(annotations, dict) else ""
        )
    for rt, _i, name in job.replica_names():
        cluster[rt.lower()].append({"url": addresses.host(name), "port": addresses.ports[name]})
    return {
        "cluster": dict(sorted(cluster.items())),
        "labels": dict(sorted(labels.items())),
        "task": {"type": rtype.lower(), "index": index},
    }


def _mxnet(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    """The MXNet operator's env: ``MX_CONFIG`` and the DMLC_* variables read from it
    (the scheduler's address, the server and worker counts, this replica's role)."""
    assert isinstance(job.spec, MXJobSpec)
    config = mx_config(job, rtype, index, addresses)
    cluster = config["cluster"]
    assert isinstance(cluster, dict)
    scheduler = cluster.get("scheduler") or [{"url": "", "port": 0}]
    env = {
        # Go's encoding/json: no spaces, map keys sorted, struct fields in order
        "MX_CONFIG": json.dumps(config, separators=(",", ":")),
        "DMLC_PS_ROOT_PORT": str(scheduler[0]["port"]),
        "DMLC_PS_ROOT_URI": str(scheduler[0]["url"]),
        "DMLC_NUM_SERVER": str(len(cluster.get("server", []))),
        "DMLC_NUM_WORKER": str(len(cluster.get("worker", []))),
        "DMLC_ROLE": rtype.lower(),
        "DMLC_USE_KUBERNETES": "1",
    }
    if rtype == "Worker":
        env["DMLC_WORKER_ID"] = str(index)  # BytePS reads it
    return env


def slots_per_worker(job: Job) -> int:
    assert isinstance(job.spec, MPIJobSpec)
    return job.spec.slotsPerWorker or 1


def hostfile_text(job: Job) -> str:
    """The MPI hostfile: one ``<job>-worker-<i> slots=<slotsPerWorker>`` line per worker."""
    slots = slots_per_worker(job)
    lines = [f"{name} slots={slots}" for rt, _i, name in job.replica_names() if rt == "Worker"]
    return "".join(f"{line}\n" for line in lines)


_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def worker_setup(job: Job, index: int, addresses: Addresses) -> str:
    """What the rsh agent (:mod:`ketch.core.workloads.rsh`) runs before a command "on"
    worker ``index``: the worker
    container's variables (those with a shell name) and its working directory."""
    container = job.container("Worker")
    env = {e.name: e.value or "" for e in container.env}
    env.update(replica_env(job, "Worker", index, addresses))
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items() if _SHELL_NAME.fullmatch(k)]
    if container.workingDir:
        lines.append(f"cd {shlex.quote(container.workingDir)} || exit 1")
    return "".join(f"{line}\n" for line in lines)


def write_mpi_files(job: Job, addresses: Addresses) -> None:
    """The launcher's hostfile, its rsh agent and each worker's setup for the agent."""
    if addresses.hostfile is None or addresses.rsh_agent is None:
        return
    addresses.hostfile.write_text(hostfile_text(job))
    rsh.write_agent(addresses.rsh_agent)
    hosts = rsh.hosts_dir(addresses.rsh_agent)
    hosts.mkdir(exist_ok=True)
    for rtype, index, name in job.replica_names():
        if rtype == "Worker":
            (hosts / f"{name}.sh").write_text(worker_setup(job, index, addresses))
            if name in addresses.shells:
                rsh.write_remote(addresses.rsh_agent, name, addresses.shells[name])


def _mpi(job: Job, rtype: str, index: int, addresses: Addresses) -> dict[str, str]:
    if rtype != "Launcher":
        return {}
    assert addresses.hostfile is not None and addresses.rsh_agent is not None
    env = {
        "OMPI_MCA_plm_rsh_agent": str(addresses.rsh_agent),
        "OMPI_MCA_orte_default_hostfile": str(addresses.hostfile),
        "I_MPI_HYDRA_HOST_FILE": str(addresses.hostfile),
        "I_MPI_HYDRA_BOOTSTRAP_EXEC": str(addresses.rsh_agent),
        "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
    }
    own = [e.name for e in job.container(rtype).env]
    env.update(rsh.launcher_defaults(bool(addresses.shells), own))
    return env
