"""A full queue answers 503 with Retry-After at once instead of timing out."""

from __future__ import annotations

import asyncio

import httpx

from tests.serving.conftest import serving
from tests.serving.models.slow import Slow


def test_queue_full_answers_503_with_retry_after() -> None:
    model = Slow("slow")
    model.settings = {"seconds": 1.0}
    with serving(models=[model], grpc=False, max_queue_size=2) as server:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                calls = [
                    client.post("/v1/models/slow:predict", json={"instances": [1]})
                    for _ in range(8)
                ]
                return list(await asyncio.gather(*calls))

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes, codes
        assert codes.count(200) <= 4
        for response in responses:
            if response.status_code == 503:
                assert response.headers["retry-after"].isdigit()
                assert "queued" in response.json()["error"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'ketch_serving_rejected_total{model="slow"}' in metrics
        assert 'ketch_serving_queue_depth{model="slow"} 0' in metrics
        assert 'ketch_serving_requests_total{model="slow",protocol="v1",code="503"}' in metrics
