"""The MLflow side of ``benchmarks/registry_vs_mlflow.py``, run by the MLflow venv's
python (it imports nothing of Ketch): registers new versions of one model with
``mlflow.register_model`` against an ``mlflow server`` and prints, as one JSON object
on stdout, MLflow's version, the seconds of each timed call and the whole loop's::

    .venv-mlflow/bin/python benchmarks/registry_mlflow_client.py URL MODEL START WARMUP N

Registration ``I`` (``START``, ``START + 1``, ..., the first ``WARMUP`` untimed) makes
version ``I + 1`` of ``s3://bench-models/MODEL/I`` with four tags, as the Ketch side
registers the same URI with four metadata properties.
"""

from __future__ import annotations

import json
import sys
import time

import mlflow


def tags(i: int) -> dict[str, str]:
    """As ``registry_vs_mlflow.metadata(i)``, as strings."""
    return {
        "accuracy": str(0.9 + (i % 100) / 1000),
        "epochs": str(i % 50 + 1),
        "framework": "sklearn",
        "stage": "dev",
    }


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    start, warmup, n = (int(arg) for arg in sys.argv[3:6])
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)

    def register(i: int) -> None:
        version = mlflow.register_model(f"s3://bench-models/{name}/{i}", name, tags=tags(i))
        if int(version.version) != i + 1:
            raise SystemExit(f"expected version {i + 1} of {name}, got {version.version}")

    for i in range(start, start + warmup):
        register(i)
    samples = []
    began = time.perf_counter()
    for i in range(start + warmup, start + warmup + n):
        begin = time.perf_counter()
        register(i)
        samples.append(time.perf_counter() - begin)
    total = time.perf_counter() - began
    print(json.dumps({"version": mlflow.__version__, "samples": samples, "total": total}))


if __name__ == "__main__":
    main()
