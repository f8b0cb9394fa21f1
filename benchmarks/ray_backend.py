"""The Ray backend against the local backend: per-task overhead, ``ketch apply`` to 4
replicas running, and a DDP job's wall time.

Starts a local Ray cluster of 3 nodes on 127.0.0.1 (one CPU each, no dashboard),
connects a RayBackend to it and makes a LocalBackend, then runs one trivial
ProcessSpec after another on each, in rounds that take turns, timing start to exit
as a controller sees it (``start``, then ``wait``). Two specs: ``true`` (no
interpreter: what the backend itself costs) and ``python -c pass`` (which both
backends fork from a warm interpreter: the local backend's fork server, and the one
each node's process runner keeps). Prints the medians, p90s and the Ray/local
ratios (target: 3x for ``true``).

Then, with a real ``ketch up --backend ray --ray-address`` on that cluster and a
real local ``ketch up`` (temporary KETCH_HOMEs), taking turns:

- ``ketch apply -f`` (the CLI) of a 1 Master + 3 Worker PyTorchJob whose replicas
  sleep, timed until its 4 replicas are active (target: Ray within 3x local);
- a 1 Master + 3 Worker gloo DDP PyTorchJob (a small MLP, ``--steps`` steps; the
  script of benchmarks/training_vs_torchrun.py), timed from POST to ``Succeeded``
  after a warm-up on each (target: Ray within 1.2x local).

    .venv/bin/python benchmarks/ray_backend.py [--tasks 40] [--rounds 3]
        [--apply-rounds 3] [--ddp-repeat 2] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.stats import percentile  # noqa: E402
from benchmarks.training_vs_torchrun import DDP_SCRIPT, run_ketch  # noqa: E402
from tests.server.helpers import Server, base_env, ketch_command  # noqa: E402

from ketch.core.backend import Backend, LocalBackend, ProcessSpec, command_entry  # noqa: E402
from ketch.core.backend.ray import RayBackend  # noqa: E402
from ketch.core.backend.ray.cluster import running  # noqa: E402

TARGET = 3.0
APPLY_TARGET = 3.0
DDP_TARGET = 1.2
JOBS = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"
SPECS = {
    "true": ProcessSpec("bench true", ["true"]),
    # as a controller makes it: the local backend forks it from its warm interpreter
    "python -c pass": ProcessSpec(
        "bench python",
        [sys.executable, "-c", "pass"],
        python=command_entry([sys.executable, "-c", "pass"], sys.executable),
    ),
}


def run(backend: Backend, spec: ProcessSpec, tasks: int) -> list[float]:
    """Seconds from start to exit of ``tasks`` runs of ``spec``, one after another."""
    times = []
    for _ in range(tasks):
        began = time.perf_counter()
        code = backend.start(spec).wait(120)
        times.append(time.perf_counter() - began)
        if code != 0:
            raise SystemExit(f"{spec.name} exited with {code} on {type(backend).__name__}")
    return times


def apply_to_running(server: Server, home: Path, name: str, timeout: float = 120.0) -> float:
    """``ketch apply -f`` of a 4-replica PyTorchJob that sleeps; seconds until all 4 are
    active. The job is deleted, and gone, before this returns."""
    container = {
        "name": "pytorch",
        "image": "example/unused",
        "command": [sys.executable, "-c", "import time; time.sleep(120)"],
    }
    template = {"template": {"spec": {"containers": [container]}}}
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, **template},
                "Worker": {"replicas": 3, **template},
            }
        },
    }
    manifest = home / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump(job))
    env = {**base_env(server.home), "KETCH_URL": server.url}
    with server.client() as http:
        begin = time.perf_counter()
        subprocess.run(
            [*ketch_command(), "apply", "-f", str(manifest)],
            env=env,
            check=True,
            capture_output=True,
        )
        try:
            while True:
                status = http.get(f"{JOBS}/{name}").json().get("status", {})
                replicas = status.get("replicaStatuses", {}).values()
                if sum(s.get("active", 0) for s in replicas) == 4:
                    return time.perf_counter() - begin
                if time.perf_counter() - begin > timeout:
                    raise SystemExit(f"{name}: its 4 replicas never all ran: {status}")
                time.sleep(0.01)
        finally:
            http.delete(f"{JOBS}/{name}")
            gone = time.perf_counter()
            while http.get(f"{JOBS}/{name}").status_code != 404 and time.perf_counter() - gone < 60:
                time.sleep(0.1)


def servers_compared(address: str, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Seconds of ``ketch apply`` → 4 replicas running and of the DDP job, per backend."""
    results: dict[str, dict[str, list[float]]] = {"apply": {}, "ddp": {}}
    with tempfile.TemporaryDirectory(prefix="ketch-bench-ray-") as tmp:
        home = Path(tmp)
        script = home / "ddp.py"
        script.write_text(DDP_SCRIPT)
        servers = {
            "ray": Server(home / "ray", args=("--backend", "ray", "--ray-address", address)),
            "local": Server(home / "local"),
        }
        try:
            for server in servers.values():
                server.start(timeout=120)
            for label, server in servers.items():  # warm: runners, fork server, first jobs
                apply_to_running(server, home, f"warm-{label}")
            for i in range(args.apply_rounds):
                for label, server in servers.items():
                    took = apply_to_running(server, home, f"apply-{label}-{i}")
                    results["apply"].setdefault(label, []).append(took)
                    print(f"apply round {i + 1} {label:<6}{took:8.3f} s", flush=True)
            command = [sys.executable, str(script), str(args.steps)]
            for i in range(args.ddp_repeat + 1):
                for label, server in servers.items():
                    with server.client() as http:
                        took = run_ketch(http, f"ddp-{label}-{i}", command, 600)
                    if i:
                        results["ddp"].setdefault(label, []).append(took)
                    round_ = "warm-up" if i == 0 else f"run {i}"
                    print(f"ddp {round_:<8}{label:<6}{took:8.3f} s", flush=True)
        finally:
            for server in servers.values():
                if server.process is not None:
                    server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40, help="tasks per round and backend")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--apply-rounds", type=int, default=3, help="timed applies per backend")
    parser.add_argument("--ddp-repeat", type=int, default=2, help="timed DDP jobs per backend")
    parser.add_argument("--steps", type=int, default=300, help="DDP training steps")
    args = parser.parse_args()
    started = time.perf_counter()
    with running(nodes=3) as cluster:
        print(f"Ray cluster of 3 nodes up in {time.perf_counter() - started:.1f} s")
        ray = RayBackend(cluster.address)
        local = LocalBackend()
        try:
            for backend in (ray, local):  # warm: runners' first calls, the fork server
                for spec in SPECS.values():
                    run(backend, spec, 3)
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for name, spec in SPECS.items():
                    for label, backend in (("ray", ray), ("local", local)):
                        samples.setdefault((name, label), []).extend(run(backend, spec, args.tasks))
        finally:
            ray.shutdown()
            local.shutdown()
        compared = servers_compared(cluster.address, args)
    print(f"\n{args.rounds} rounds x {args.tasks} tasks per backend, one at a time")
    print(f"{'spec':<16}{'backend':<8}{'median ms':>10}{'p90 ms':>9}")
    ratios = {}
    for name in SPECS:
        medians = {}
        for label in ("ray", "local"):
            values = samples[(name, label)]
            medians[label] = statistics.median(values)
            print(
                f"{name:<16}{label:<8}{medians[label] * 1000:>10.1f}"
                f"{percentile(values, 90) * 1000:>9.1f}"
            )
        ratios[name] = medians["ray"] / medians["local"]
    print()
    for name, ratio in ratios.items():
        target = f" (target {TARGET:g}x: {'met' if ratio <= TARGET else 'NOT met'})"
        print(
            f"per-task overhead, {name}: Ray / local = {ratio:.2f}x"
            + (target if name == "true" else "")
        )

    print()
    for key, what, target in (
        ("apply", "ketch apply -> 4 replicas running", APPLY_TARGET),
        ("ddp", f"DDP job ({args.steps} steps) wall time", DDP_TARGET),
    ):
        medians = {label: statistics.median(v) for label, v in compared[key].items()}
        ratio = medians["ray"] / medians["local"]
        print(
            f"{what}: Ray {medians['ray']:.3f} s, local {medians['local']:.3f} s (medians, "
            f"n={len(compared[key]['ray'])}); Ray / local = {ratio:.2f}x "
            f"(target {target:g}x: {'met' if ratio <= target else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
