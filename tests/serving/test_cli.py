"""``ketch serve`` as users run it: a process, its ready line, signals, workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.conftest import KETCH, MODELS, Iris, ketch_serve


def v2_predict(url: str, name: str, rows: np.ndarray) -> list[int]:
    body = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ]
    }
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data: list[int] = response.json()["outputs"][0]["data"]
    return data


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_urls_serves_and_stops_cleanly(iris: Iris, stop: signal.Signals) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    with ketch_serve(str(iris.folder), "--name", "flowers", "--grpc-port", "0") as served:
        assert served.grpc is not None
        rows = iris.X[::30]
        assert v2_predict(served.url, "flowers", rows) == iris.model.predict(rows).tolist()
        client = grpcclient.InferenceServerClient(served.grpc)
        try:
            assert client.is_model_ready("flowers")
        finally:
            client.close()
        served.process.send_signal(stop)
        assert served.process.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{served.url}/v2/health/live")


def test_workers_share_the_port_and_stop_together(iris: Iris) -> None:
    with ketch_serve(str(iris.folder), "--workers", "2", "--grpc-port", "-1") as served:
        assert served.grpc is None
        with httpx.Client(base_url=served.url) as http:
            for _ in range(4):
                assert http.get("/v2/models/iris/ready").status_code == 200
        rows = iris.X[:2]
        assert v2_predict(served.url, "iris", rows) == iris.model.predict(rows).tolist()
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(30) == 0
    # No worker is left listening on the shared port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{served.url}/v2/health/live")


def test_batching_flags_and_a_python_model(tmp_path: Path) -> None:
    with ketch_serve(
        str(MODELS / "recorder.py"), "--name", "rec", "--grpc-port", "-1",
        "--max-batch-size", "8", "--max-latency-ms", "1",
    ) as served:  # fmt: skip
        response = httpx.post(f"{served.url}/v1/models/rec:predict", json={"instances": [[1, 2]]})
        assert response.json() == {"predictions": [[2, 4]]}
        assert (
            'ketch_serving_batch_size_count{model="rec"} 1'
            in httpx.get(f"{served.url}/metrics").text
        )


def test_failed_model_is_reported_and_served_not_ready(tmp_path: Path) -> None:
    with ketch_serve(str(MODELS / "broken.py"), "--name", "b", "--grpc-port", "-1") as served:
        assert any("failed to load" in line and "checksum" in line for line in served.output)
        ready = httpx.get(f"{served.url}/v2/models/b/ready")
        assert ready.status_code == 503 and "checksum" in ready.json()["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/model"], "does not exist"),
        (["MODEL", "--format", "tensorflow"], "unknown format"),
    ],
)
def test_bad_arguments_exit_2(iris: Iris, args: list[str], message: str) -> None:
    args = [str(iris.folder) if a == "MODEL" else a for a in args]
    result = subprocess.run(
        [KETCH, "serve", *args, "--port", "0", "--grpc-port", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("given", ["env", "flag"])
def test_serve_listens_on_the_address_of_its_node(iris: Iris, given: str) -> None:
    """A backend that spreads work over nodes tells a process its node's address in
    KETCH_NODE_HOST (here a loopback address of its own, as ``ketch ray up
    --address-per-node`` gives a node): ``ketch serve`` listens there, as on --host."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [KETCH, "serve", str(iris.folder), "--port", "0", "--grpc-port", "-1"]
    if given == "env":
        env["KETCH_NODE_HOST"] = "127.0.0.2"
    else:
        env.pop("KETCH_NODE_HOST", None)
        args += ["--host", "127.0.0.2"]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert process.stdout is not None
        lines = []
        while not lines or "listening on" not in lines[-1]:
            line = process.stdout.readline()
            assert line, f"ketch serve exited early:\n{''.join(lines)}"
            lines.append(line)
        match = re.search(r"listening on http://127\.0\.0\.2:(\d+)$", lines[-1].strip())
        assert match, lines
        assert not any("warning" in line for line in lines), lines  # still loopback
        port = int(match.group(1))
        rows = iris.X[:2]
        assert (
            v2_predict(f"http://127.0.0.2:{port}", "iris", rows)
            == iris.model.predict(rows).tolist()
        )
        with pytest.raises(httpx.ConnectError):  # not on 127.0.0.1
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        if process.stdout is not None:
            process.stdout.close()
