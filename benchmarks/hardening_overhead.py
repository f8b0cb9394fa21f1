"""What the server's bounds cost, side by side with going without them, in one run.

a. Parsing YAML manifests: Ketch's bounded loader (``ketch.core.documents``, which
   checks nesting and alias expansion) against plain ``yaml.safe_load_all``, on a
   realistic PyTorchJob manifest and on a Kubeflow-style file of several documents;
   and on a 319-byte alias bomb, where PyYAML builds the object (and serializing it,
   as a store would, makes it tens of MB) while Ketch refuses it.
b. Requests through the API: the same app served with and without the request guard
   (Host, Origin and Content-Type checks), p50 of a GET and of a POST of a manifest
   over real HTTP on 127.0.0.1.

    python benchmarks/hardening_overhead.py [--repeat 2000] [--requests 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from ketch.core.documents import load_yaml_all  # noqa: E402
from ketch.core.errors import InvalidSpec  # noqa: E402

JOB = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: pytorch-simple
  labels: {team: ml, project: mnist}
spec:
  runPolicy: {suspend: true, cleanPodPolicy: None}
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: OnFailure
      template:
        spec:
          containers:
            - name: pytorch
              image: docker.io/kubeflowkatib/pytorch-mnist:v1beta1
              command: [python3, /opt/pytorch-mnist/mnist.py, --epochs=1]
              resources: {limits: {cpu: "1", memory: 2Gi}}
              env: [{name: A, value: "1"}, {name: B, value: "2"}]
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        spec:
          containers:
            - name: pytorch
              image: docker.io/kubeflowkatib/pytorch-mnist:v1beta1
              command: [python3, /opt/pytorch-mnist/mnist.py, --epochs=1]
"""
MULTI = "---\n".join([JOB] * 8)
BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{n}: &{n} [{', '.join(['*' + p] * 9)}]"
            for p, n in zip("abcdef", "bcdefg", strict=True)
        ),
    ]
)


def _time(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def parse_rows(repeat: int) -> list[tuple[str, float, float]]:
    rows = []
    for label, text in (("PyTorchJob manifest", JOB), ("8-document file", MULTI)):
        ketch = _time(lambda t=text: load_yaml_all(t), repeat)
        plain = _time(lambda t=text: list(yaml.safe_load_all(t)), repeat)
        rows.append((label, ketch, plain))

    def refuse() -> None:
        try:
            load_yaml_all(BOMB)
        except InvalidSpec:
            return
        raise AssertionError("the bomb was not refused")

    ketch = _time(refuse, 20)
    start = time.perf_counter()
    built = yaml.safe_load(BOMB)
    size = len(json.dumps(built))  # what storing it would write
    plain = time.perf_counter() - start
    rows.append((f"{len(BOMB)}-byte alias bomb ({size / 1e6:.0f} MB once stored)", ketch, plain))
    return rows


def _serve(guarded: bool, home: Path) -> Any:
    from tests.server.helpers import ThreadServer

    from ketch.capabilities import create_app
    from ketch.server.guard import RequestGuardMiddleware

    app = create_app(database_url=f"sqlite:///{home / 'ketch.db'}", background=False)
    if not guarded:
        app.user_middleware = [
            m for m in app.user_middleware if m.cls is not RequestGuardMiddleware
        ]
    return ThreadServer(app)


def request_rows(count: int) -> list[tuple[str, float, float]]:
    manifest = yaml.safe_load(JOB)
    results: dict[str, dict[bool, float]] = {"GET a list": {}, "POST a manifest": {}}
    for guarded in (True, False):
        with tempfile.TemporaryDirectory() as tmp, _serve(guarded, Path(tmp)) as server:
            with httpx.Client(base_url=server.url) as http:
                path = "/apis/kubeflow.org/v1/namespaces/bench/pytorchjobs"
                gets, posts = [], []
                for index in range(count):
                    body = dict(manifest, metadata={"name": f"job-{index}"})
                    start = time.perf_counter()
                    created = http.post(path, json=body)
                    posts.append(time.perf_counter() - start)
                    assert created.status_code == 201, created.text
                    start = time.perf_counter()
                    listed = http.get(path, params={"limit": 5})
                    gets.append(time.perf_counter() - start)
                    assert listed.status_code == 200
                results["GET a list"][guarded] = statistics.median(gets)
                results["POST a manifest"][guarded] = statistics.median(posts)
    return [(label, r[True], r[False]) for label, r in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    print("a. parsing YAML (median)")
    print(f"   {'input':55} {'Ketch (bounded)':>16} {'PyYAML':>12} {'ratio':>8}")
    for label, ketch, plain in parse_rows(args.repeat):
        print(f"   {label:55} {ketch * 1e3:13.3f} ms {plain * 1e3:9.3f} ms {plain / ketch:7.2f}x")
    print("b. requests over HTTP on 127.0.0.1 (p50)")
    print(f"   {'request':55} {'with guard':>16} {'without':>12} {'ratio':>8}")
    for label, guarded, bare in request_rows(args.requests):
        print(f"   {label:55} {guarded * 1e3:13.3f} ms {bare * 1e3:9.3f} ms {bare / guarded:7.2f}x")
    print("ratio: the peer's time over Ketch's (above 1: Ketch is faster)")


if __name__ == "__main__":
    main()
