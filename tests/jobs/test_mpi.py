"""An MPIJob run by a real OpenMPI ``mpirun``: the launcher reaches its workers
through the operator's hostfile and rsh agent, and the ranks do a real allreduce."""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.conftest import apply, manifest, path, replica, wait_for

PY = sys.executable

# Each rank reports what OpenMPI told it and what it ran in, after an allreduce of
# rank + 1 over MPI_COMM_WORLD through libmpi's C API (no mpi4py needed).
RANK_SCRIPT = """
import ctypes, json, os, sys
mpi = ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)
handle = lambda symbol: ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(mpi, symbol)))
assert mpi.MPI_Init(None, None) == 0
world = handle("ompi_mpi_comm_world")
rank, size = ctypes.c_int(), ctypes.c_int()
mpi.MPI_Comm_rank(world, ctypes.byref(rank))
mpi.MPI_Comm_size(world, ctypes.byref(size))
send, total = ctypes.c_int(rank.value + 1), ctypes.c_int()
mpi.MPI_Allreduce(ctypes.byref(send), ctypes.byref(total), 1, handle("ompi_mpi_int"),
                  handle("ompi_mpi_op_sum"), world)
env = os.environ
print(f"rank {env['OMPI_COMM_WORLD_RANK']} of {env['OMPI_COMM_WORLD_SIZE']}: sum {total.value}", flush=True)
with open(os.path.join(sys.argv[1], f"rank-{rank.value}.json"), "w") as out:
    json.dump({"rank": rank.value, "size": size.value, "sum": total.value,
               "env_rank": env["OMPI_COMM_WORLD_RANK"], "env_size": env["OMPI_COMM_WORLD_SIZE"],
               "local_size": env["OMPI_COMM_WORLD_LOCAL_SIZE"], "role": env.get("ROLE"),
               "cpus": sorted(os.sched_getaffinity(0))}, out)
mpi.MPI_Finalize()
"""


@pytest.fixture(scope="module")
def libmpi() -> str:
    """OpenMPI's C library, once ``mpirun`` is OpenMPI's; skips without them."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip(
            "mpirun is not installed: scripts/ci-mpi.sh installs OpenMPI (Debian's openmpi-bin)"
        )
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=60)
    if "Open MPI" not in version.stdout + version.stderr:
        pytest.skip(f"{mpirun} is not OpenMPI's mpirun: {version.stdout.strip()[:200]}")
    library = ctypes.util.find_library("mpi")
    if library is None:
        pytest.skip("OpenMPI's libmpi is not found by the dynamic loader")
    return library


def _without_command(spec: dict[str, Any]) -> dict[str, Any]:
    for container in spec["template"]["spec"]["containers"]:
        container.pop("command", None)
    return spec


def test_mpirun_runs_ranks_on_the_workers(
    libmpi: str, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    job = manifest(
        "MPIJob",
        "pi",
        {
            "Launcher": replica(
                ["mpirun", "-np", "2", PY, "-c", RANK_SCRIPT, str(tmp_path), libmpi],
                env=[{"name": "ROLE", "value": "launcher"}],
            ),
            # a worker with no command, as in Kubeflow's MPI examples: it idles and hosts ranks
            "Worker": _without_command(replica([], 2, env=[{"name": "ROLE", "value": "worker"}])),
        },
        slotsPerWorker=1,
        runPolicy={"cleanPodPolicy": "Running"},
    )
    apply(client, ns, job)
    done = wait_for(client, "MPIJob", ns, "pi", "Succeeded", timeout=120)
    log = client.get(path("MPIJob", ns, "pi") + "/log", params={"replica": "pi-launcher-0"}).text

    ranks = [json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in range(2)]
    for i, rank in enumerate(ranks):
        assert (rank["rank"], rank["size"], rank["env_rank"], rank["env_size"]) == (
            i,
            2,
            str(i),
            "2",
        )
        assert rank["sum"] == 3  # 1 + 2: the allreduce went between the two ranks
        assert rank["local_size"] == "1"  # slots=1: one rank on each worker host
        assert rank["role"] == "worker"  # started in the worker's environment
        assert rank["cpus"] == sorted(os.sched_getaffinity(0))  # not all bound to one core
        assert f"rank {i} of 2: sum 3" in log, log
    assert done["status"]["replicaStatuses"]["Launcher"] == {"succeeded": 1}
    assert "active" not in done["status"]["replicaStatuses"]["Worker"]
