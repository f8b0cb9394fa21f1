"""Time from ``ketch apply -f`` of a 1-master/3-worker PyTorchJob to all 4 replicas running.

Starts a real ``ketch up --port 0`` with a temporary KETCH_HOME, applies the job
with the real CLI, polls ``replicaStatuses`` until 4 replicas are active, prints
the time (target: under 1.5 s) and deletes the job.

    .venv/bin/python benchmarks/training_start.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.server.helpers import Server, base_env, ketch_command  # noqa: E402

TARGET = 1.5


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        replica = {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "example/unused",
                            "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                        }
                    ]
                }
            }
        }
        job = {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": "bench"},
            "spec": {
                "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, **replica},
                    "Worker": {"replicas": 3, **replica},
                }
            },
        }
        manifest = home / "job.yaml"
        manifest.write_text(yaml.safe_dump(job))
        server = Server(home / "server").start()
        try:
            env = {**base_env(home / "server"), "KETCH_URL": server.url}
            with server.client() as http:
                begin = time.perf_counter()
                subprocess.run(
                    [*ketch_command(), "apply", "-f", str(manifest)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                applied = time.perf_counter() - begin
                while True:
                    status = http.get(
                        "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/bench"
                    ).json()["status"]
                    active = sum(
                        s.get("active", 0) for s in status.get("replicaStatuses", {}).values()
                    )
                    if active == 4:
                        break
                    if time.perf_counter() - begin > 60:
                        raise SystemExit(f"replicas never all ran: {status}")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - begin
                http.delete("/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/bench")
        finally:
            server.stop()
    print(
        f"ketch apply (CLI) took {applied:.3f}s; all 4 replicas running after {elapsed:.3f}s "
        f"(target < {TARGET}s, ratio {elapsed / TARGET:.2f} of target)"
    )


if __name__ == "__main__":
    main()
