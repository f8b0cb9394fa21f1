"""What Kubeflow Trainer's ML-policy plugins set on a TrainJob's replicas, made local.

Addresses are the first node's as the backend places it (``127.0.0.1`` on the
local backend, the Ray node's on a Ray cluster) and ports are free ones there
(Trainer's own port, 29500, when it is free).

- torch: ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``,
  ``PET_MASTER_ADDR``, ``PET_MASTER_PORT`` (``torchrun`` reads them); with an
  elastic policy ``PET_NNODES=min:max`` and a c10d rendezvous. The trainer's
  command runs under torchrun: ``torchrun ...`` and ``python script.py ...``
  become ``<this python> -m torch.distributed.run ...``; other commands
  (``python -m module``, a shell) run as they are, with the ``PET_*`` variables.
- jax: ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_COORDINATOR_PORT``, ``JAX_DISTRIBUTED_BACKEND=gloo``.
- xgboost: ``DMLC_TRACKER_URI``, ``DMLC_TRACKER_PORT``, ``DMLC_TASK_ID``,
  ``DMLC_NUM_WORKER``.
- mpi: the launcher gets a hostfile (``<job>-node-0-<i>.<job> slots=<numProcPerNode>``)
  and a remote shell that runs each rank on this machine
  (``OMPI_MCA_orte_default_hostfile``, ``OMPI_MCA_plm_rsh_agent``,
  ``OMPI_MCA_orte_set_default_slots``, and Intel MPI's ``I_MPI_HYDRA_*``).

Every replica also gets the workspace (Trainer mounts it at ``/workspace``):
``KETCH_WORKSPACE_DIR`` is the job's local directory, with ``dataset`` and
``model`` in it, and ``/workspace`` in a command, its args, env values and
``workingDir`` is rewritten to it. ``KUBEFLOW_TRAINER_STATUS_FILE`` is where a
trainer may write its progress (:mod:`ketch.trainer.progress`).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from ketch.core.backend import Backend
from ketch.core.workloads import rsh
from ketch.core.workloads.gang import Addresses
from ketch.core.workloads.pods import Container
from ketch.trainer.mlpolicy import TrainJobPlan
from ketch.trainer.spec import LAUNCHER, NODE

RDZV_PORT = 29400  # torch's c10d rendezvous port; another free one when taken
WORKSPACE = "/workspace"
STATUS_FILE_ENV = "KUBEFLOW_TRAINER_STATUS_FILE"
WORKSPACE_ENV = "KETCH_WORKSPACE_DIR"
TORCHRUN = ("-m", "torch.distributed.run")
_WORKSPACE_RE = re.compile(r"(?<![\w./-])/workspace(?![\w.-])")


def status_file(workdir: Path) -> Path:
    return workdir / "trainer-status.json"


def allocate(plan: TrainJobPlan, backend: Backend, workdir: Path) -> Addresses:
    """The ports (reserved through ``backend``) and files the plan's replicas need."""
    addresses = Addresses()
    for sub in ("dataset", "model"):
        (plan.workspace / sub).mkdir(parents=True, exist_ok=True)
    first = f"{plan.name}-{plan.trainer_step}-0"
    placement = None
    if plan.trainer_step in plan.replicas:
        placement = plan.placement(first)
        addresses.hosts[first] = backend.host_of(placement)
    if plan.framework in ("torch", "jax", "xgboost") and placement is not None:
        addresses.ports[first] = backend.reserve_port(_declared_port(plan), placement)
    if plan.framework == "torch" and plan.elastic is not None:
        addresses.rdzv_port = backend.reserve_port(RDZV_PORT, placement)
    if plan.framework == "mpi":
        addresses.hostfile = workdir / "hostfile"
        addresses.rsh_agent = workdir / "kubexec.sh"
        addresses.hostfile.write_text(hostfile_text(plan))
        rsh.write_agent(addresses.rsh_agent)
        _node_shells(plan, backend, addresses)
    return addresses


def _node_shells(plan: TrainJobPlan, backend: Backend, addresses: Addresses) -> None:
    """Where the backend has several nodes, the launcher's remote shell starts the ranks
    of each ``node`` host on that node replica's node, in the node's environment."""
    assert addresses.rsh_agent is not None
    nodes = [(i, name) for rtype, i, name in plan.replica_names() if rtype == NODE]
    folder = rsh.hosts_dir(addresses.rsh_agent)
    for index, replica in nodes:
        host = node_host(plan, index)
        shell = backend.remote_shell(plan.placement(replica))
        if shell is None:
            continue
        folder.mkdir(exist_ok=True)
        env = {"PYTHONUNBUFFERED": "1", WORKSPACE_ENV: str(plan.workspace)}
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        (folder / f"{host}.sh").write_text("".join(f"{line}\n" for line in lines))
        rsh.write_remote(addresses.rsh_agent, host, shell)
        addresses.shells[replica] = shell


def _declared_port(plan: TrainJobPlan) -> int:
    container = plan.container(plan.trainer_step)
    return next((p.containerPort for p in container.ports), plan.default_port)


def node_host(plan: TrainJobPlan, index: int) -> str:
    """The host name of node replica ``index`` in the launcher's hostfile."""
    return f"{plan.name}-{NODE}-0-{index}.{plan.name}"


def hostfile_text(plan: TrainJobPlan) -> str:
    """Trainer's hostfile: the launcher first when it runs as a node, then the nodes."""
    slots = plan.nproc
    hosts: list[str] = []
    run_as_node = bool(plan.mpi and plan.mpi.runLauncherAsNode)
    if run_as_node:
        hosts.append(f"{plan.name}-{LAUNCHER}-0-0.{plan.name}")
    for index in range(plan.num_nodes - (1 if run_as_node else 0)):
        hosts.append(node_host(plan, index))
    return "".join(f"{host} slots={slots}\n" for host in hosts)


def replica_env(
    plan: TrainJobPlan, step: str, index: int, addresses: Addresses, workdir: Path
) -> dict[str, str]:
    """The variables replica ``index`` of ``step`` gets."""
    env = {
        "PYTHONUNBUFFERED": "1",
        WORKSPACE_ENV: str(plan.workspace),
        STATUS_FILE_ENV: str(status_file(workdir)),
    }
    role = plan.roles.get(step)
    if role in ("dataset", "model"):
        return env
    if role != "trainer":
        return env
    first = addresses.ports.get(f"{plan.name}-{plan.trainer_step}-0", 0)
    host = addresses.host(f"{plan.name}-{plan.trainer_step}-0")  # the first node's address
    if plan.framework == "torch":
        env.update(_torch(plan, index, first, addresses))
    elif plan.framework == "jax":
        env.update(
            JAX_NUM_PROCESSES=str(plan.num_nodes),
            JAX_PROCESS_ID=str(index),
            JAX_COORDINATOR_ADDRESS=f"{host}:{first}",
            JAX_COORDINATOR_PORT=str(first),
            JAX_DISTRIBUTED_BACKEND="gloo",
        )
    elif plan.framework == "xgboost":
        env.update(
            DMLC_TRACKER_URI=host,
            DMLC_TRACKER_PORT=str(first),
            DMLC_TASK_ID=str(index),
            DMLC_NUM_WORKER=str(plan.num_nodes * plan.nproc),
        )
    elif (
        plan.framework == "mpi"
        and addresses.hostfile is not None
        and addresses.rsh_agent is not None
    ):
        env.update(
            OMPI_MCA_orte_default_hostfile=str(addresses.hostfile),
            OMPI_MCA_plm_rsh_agent=str(addresses.rsh_agent),
            OMPI_MCA_orte_keep_fqdn_hostnames="true",
            OMPI_MCA_orte_set_default_slots=str(plan.nproc),
            I_MPI_HYDRA_HOST_FILE=str(addresses.hostfile),
            I_MPI_HYDRA_BOOTSTRAP_EXEC=str(addresses.rsh_agent),
        )
        own = [e.name for e in plan.container(step).env]
        env.update(rsh.launcher_defaults(bool(addresses.shells), own))
    return env


def _torch(plan: TrainJobPlan, index: int, port: int, addresses: Addresses) -> dict[str, str]:
    host = addresses.host(f"{plan.name}-{plan.trainer_step}-0")
    env = {
        "PET_NNODES": str(plan.num_nodes),
        "PET_NPROC_PER_NODE": str(plan.nproc),
        "PET_NODE_RANK": str(index),
        "PET_MASTER_ADDR": host,
        "PET_MASTER_PORT": str(port),
    }
    elastic = plan.elastic
    if elastic is not None:
        low = elastic.minNodes or plan.num_nodes
        high = elastic.maxNodes or max(low, plan.num_nodes)
        env.update(
            PET_NNODES=f"{low}:{high}",
            PET_RDZV_BACKEND="c10d",
            PET_RDZV_ENDPOINT=f"{host}:{addresses.rdzv_port}",
            PET_RDZV_ID=plan.name,
            TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",  # lets nodes join a running group later
        )
        if elastic.maxRestarts is not None:
            env["PET_MAX_RESTARTS"] = str(elastic.maxRestarts)
    return env


def command(plan: TrainJobPlan, step: str, container: Container) -> list[str]:
    """The command replica processes of ``step`` run, made local."""
    argv = [rewrite(a, plan.workspace) for a in (*container.command, *container.args)]
    role = plan.roles.get(step)
    if role in ("dataset", "model") and not container.command:
        dest = plan.workspace / ("dataset" if role == "dataset" else "model")
        return [sys.executable, "-m", "ketch.trainer.initializers", "--dest", str(dest)]
    if not argv:
        return argv
    if role == "trainer" and plan.framework == "torch":
        return torchrun(argv)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def torchrun(argv: list[str]) -> list[str]:
    """``argv`` run under torchrun: ``torchrun ...`` and ``python script ...`` become this
    interpreter's ``-m torch.distributed.run``; ``python -m module`` (a module may be a
    launcher itself) and other commands run as they are."""
    head = os.path.basename(argv[0])
    rest = argv[1:]
    if head == "torchrun":
        return [sys.executable, *TORCHRUN, *rest]
    if head not in ("python", "python3") and argv[0] != sys.executable:
        return argv
    if rest and not rest[0].startswith("-"):
        return [sys.executable, *TORCHRUN, *rest]
    return [sys.executable, *rest]


def rewrite(value: str, workspace: Path) -> str:
    """``value`` with ``/workspace`` (Trainer's mount) pointing at the local workspace."""
    return _WORKSPACE_RE.sub(str(workspace), value)
