"""Wall time of one 4-process DDP training script: Ketch PyTorchJob vs bare ``torchrun``.

The same script (gloo, ``init_method="env://"``, a small MLP on generated data, 300
DistributedDataParallel steps) runs

1. as a Ketch PyTorchJob with 1 Master + 3 Workers on a real ``ketch up --port 0``
   (temporary KETCH_HOME), timed from the POST of the manifest to the ``Succeeded``
   condition, and
2. under ``torchrun --nproc-per-node 4 --standalone``, timed from process start to exit.

After one warm-up of each, the two alternate ``--repeat`` times; the medians and the
ratio Ketch/torchrun are printed (target: within 1.2x).

    .venv/bin/python benchmarks/training_vs_torchrun.py [--repeat 3] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.server.helpers import Server  # noqa: E402

TARGET = 1.2
GROUP = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"

DDP_SCRIPT = """
import os, sys, time
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

torch.set_num_threads(1)  # the same under torchrun (which sets OMP_NUM_THREADS=1) and Ketch
steps = int(sys.argv[1])
dist.init_process_group("gloo", init_method="env://")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
x = torch.randn(1024, 32)
y = torch.sin(x @ torch.randn(32, 1))
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
ddp = DDP(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
shard = x.shape[0] // world
xs, ys = x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]
for _ in range(steps):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(ddp(xs), ys)
    loss.backward()
    opt.step()
if rank == 0:
    print(f"world={world} steps={steps} loss={loss.item():.5f}", flush=True)
dist.destroy_process_group()
"""


def condition(job: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True"
        for c in job.get("status", {}).get("conditions", [])
    )


def run_ketch(http: httpx.Client, name: str, command: list[str], timeout: float) -> float:
    """POST a 1 Master + 3 Worker PyTorchJob; seconds until its Succeeded condition."""
    container = {"name": "pytorch", "image": "example/unused", "command": command}
    spec = {"template": {"spec": {"containers": [container]}}}
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, **spec},
                "Worker": {"replicas": 3, **spec},
            }
        },
    }
    begin = time.perf_counter()
    response = http.post(GROUP, json=job)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"creating {name}: HTTP {response.status_code}: {response.text}")
    try:
        while True:
            current = http.get(f"{GROUP}/{name}").json()
            if condition(current, "Succeeded"):
                return time.perf_counter() - begin
            if condition(current, "Failed"):
                logs = http.get(f"{GROUP}/{name}/log", params={"replica": f"{name}-master-0"})
                raise RuntimeError(
                    f"{name} failed: {current.get('status')}\nmaster log:\n{logs.text[-3000:]}"
                )
            if time.perf_counter() - begin > timeout:
                raise RuntimeError(f"{name} did not succeed in {timeout}s: {current.get('status')}")
            time.sleep(0.01)
    finally:
        http.delete(f"{GROUP}/{name}")


def run_torchrun(command_tail: list[str], env: dict[str, str], timeout: float) -> float:
    """``torchrun --nproc-per-node 4 --standalone SCRIPT ...``; seconds from start to exit."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "4",
        "--standalone",
        *command_tail,
    ]
    begin = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - begin
    if done.returncode != 0:
        raise RuntimeError(
            f"torchrun exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each (after 1 warm-up each)"
    )
    parser.add_argument("--steps", type=int, default=300, help="DDP training steps per run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ketch-bench-ddp-"))
    server: Server | None = None
    try:
        script = tmp / "ddp.py"
        script.write_text(DDP_SCRIPT)
        tail = [str(script), str(args.steps)]
        torchrun_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        }
        server = Server(tmp / "server").start()
        times: dict[str, list[float]] = {"ketch": [], "torchrun": []}
        with server.client() as http:
            for i in range(args.repeat + 1):
                k = run_ketch(http, f"ddp-bench-{i}", [sys.executable, *tail], args.timeout)
                t = run_torchrun(tail, torchrun_env, args.timeout)
                label = "warm-up" if i == 0 else f"run {i}"
                print(
                    f"{label:>8}: ketch {k:7.3f}s   torchrun {t:7.3f}s   ratio {k / t:5.2f}",
                    flush=True,
                )
                if i:
                    times["ketch"].append(k)
                    times["torchrun"].append(t)
        ketch, torchrun = (statistics.median(times[key]) for key in ("ketch", "torchrun"))
        print()
        print(f"{'':10}{'median':>9}{'min':>9}{'max':>9}")
        for key in ("ketch", "torchrun"):
            print(
                f"{key:10}{statistics.median(times[key]):8.3f}s{min(times[key]):8.3f}s{max(times[key]):8.3f}s"
            )
        ratio = ketch / torchrun
        verdict = "within" if ratio <= TARGET else "over"
        print(
            f"\nratio Ketch/torchrun (medians, n={args.repeat}, {args.steps} steps): "
            f"{ratio:.2f}x ({verdict} the {TARGET}x target)"
        )
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, None):
                print(
                    f"ketch up exited with {code}; log tail:\n{server.output()[-2000:]}",
                    file=sys.stderr,
                )
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
