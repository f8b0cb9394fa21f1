"""Adaptive batching merges concurrent requests and splits the answers back in order."""

from __future__ import annotations

import asyncio
import re
import threading

import httpx
import numpy as np
import pytest

from ketch.serving.batching import AdaptiveBatcher
from ketch.serving.errors import InferenceError
from tests.serving.conftest import serving
from tests.serving.models.recorder import Recorder

grpcclient = pytest.importorskip("tritonclient.grpc")


def v2_body(value: float, rows: int = 1) -> dict[str, object]:
    data = [[value + r, -value] for r in range(rows)]
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [rows, 2], "data": data}]}


async def fire(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        calls = []
        for i in range(count):
            if i % 3 == 0:
                calls.append(
                    client.post(
                        "/v1/models/rec:predict", json={"instances": [[float(i), -float(i)]]}
                    )
                )
            else:
                calls.append(
                    client.post("/v2/models/rec/infer", json=v2_body(float(i), rows=1 + i % 2))
                )
        return list(await asyncio.gather(*calls))


def batch_count(metrics: str) -> int:
    match = re.search(r'ketch_serving_batch_size_count\{model="rec"\} (\d+)', metrics)
    assert match, metrics
    return int(match.group(1))


def test_concurrent_requests_share_model_calls() -> None:
    model = Recorder("rec")
    # A long max latency: the batch closes when full, so merging does not hang on timing.
    with serving(models=[model], max_batch_size=16, max_latency_ms=2000) as server:
        responses = asyncio.run(fire(server.url, 12))
        rows = 0
        for i, response in enumerate(responses):
            assert response.status_code == 200, response.text
            if i % 3 == 0:
                assert response.json() == {"predictions": [[2.0 * i, -2.0 * i]]}
                rows += 1
            else:
                (output,) = response.json()["outputs"]
                expected = [[2 * (i + r), -2.0 * i] for r in range(1 + i % 2)]
                assert np.reshape(output["data"], output["shape"]).tolist() == expected
                rows += 1 + i % 2
        assert sum(model.calls) == rows
        assert max(model.calls) > 1, model.calls
        metrics = httpx.get(f"{server.url}/metrics").text
        assert batch_count(metrics) == len(model.calls) < len(responses)


def test_grpc_requests_are_batched_too() -> None:
    model = Recorder("rec")
    with serving(models=[model], max_batch_size=8, max_latency_ms=2000) as server:
        assert server.grpc_address is not None
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            done = threading.Semaphore(0)
            results: dict[int, np.ndarray] = {}

            def callback(index: int, result: object, error: object) -> None:
                assert error is None, error
                results[index] = result.as_numpy("doubled")  # type: ignore[attr-defined]
                done.release()

            for i in range(8):
                tensor = grpcclient.InferInput("x", [1, 2], "FP32")
                tensor.set_data_from_numpy(np.array([[i, 1]], dtype=np.float32))
                client.async_infer(
                    "rec", [tensor], lambda result, error, i=i: callback(i, result, error)
                )
            for _ in range(8):
                assert done.acquire(timeout=30), results
            for i in range(8):
                assert results[i].tolist() == [[2.0 * i, 2.0]]
            assert max(model.calls) > 1, model.calls
        finally:
            client.close()


def test_batcher_groups_by_shape_and_reports_errors() -> None:
    calls: list[tuple[int, ...]] = []

    async def run(inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        x = inputs["x"]
        calls.append(x.shape)
        if x.shape[1] == 3:
            raise ValueError("three columns are not allowed")
        return {"y": x.sum(axis=1)}

    async def main() -> list[object]:
        batcher = AdaptiveBatcher(run, max_batch_size=10, max_latency=0.05)
        jobs = [
            batcher.submit({"x": np.ones((1, 2))}, "predict"),
            batcher.submit({"x": np.ones((2, 3))}, "predict"),
            batcher.submit({"x": np.full((1, 2), 2.0)}, "predict"),
        ]
        try:
            return list(await asyncio.gather(*jobs, return_exceptions=True))
        finally:
            await batcher.close()

    first, second, third = asyncio.run(main())
    assert isinstance(first, dict) and first["y"].tolist() == [2.0]
    assert isinstance(third, dict) and third["y"].tolist() == [4.0]
    assert isinstance(second, ValueError)
    assert sorted(calls) == [(2, 2), (2, 3)]


def test_batcher_rejects_outputs_without_rows() -> None:
    async def run(inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        return {"total": np.array(inputs["x"].sum())}

    async def main() -> list[object]:
        batcher = AdaptiveBatcher(run, max_batch_size=4, max_latency=0.05)
        jobs = [batcher.submit({"x": np.ones((1, 2))}, "p") for _ in range(2)]
        try:
            return list(await asyncio.gather(*jobs, return_exceptions=True))
        finally:
            await batcher.close()

    for result in asyncio.run(main()):
        assert isinstance(result, InferenceError)
        assert "batching" in str(result)


def test_cheap_calls_run_inline_and_slow_ones_in_the_pool() -> None:
    from ketch.serving.runner import INLINE_BUDGET_S, CostTracker

    cheap = CostTracker()
    assert not cheap.inline()  # unknown: the pool first
    cheap.record_pool(0.002, 0.00005)  # slow in wall time (GIL wait), cheap in CPU
    assert cheap.inline()  # tried inline
    cheap.record_inline(0.00005)
    assert all(cheap.inline() for _ in range(10))
    cheap.record_inline(0.05)  # one outlier: back to the pool ...
    assert not cheap.inline()
    cheap.record_pool(0.0001, 0.00005)
    tries = [cheap.inline() for _ in range(200)]
    assert any(tries) and not all(tries)  # ... with an inline try now and then

    blocking = CostTracker()  # sleeps or waits on I/O: cheap in CPU, long in wall time
    blocking.record_pool(1.0, 0.00001)
    assert not any(blocking.inline() for _ in range(200))

    heavy = CostTracker()
    heavy.record_pool(0.01, 10 * INLINE_BUDGET_S)
    assert not any(heavy.inline() for _ in range(200))
