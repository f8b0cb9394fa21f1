"""In-process parts of the InferenceService: spec parsing, autoscaler, payload logger."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.errors import InvalidSpec
from ketch.serving.autoscaler import Autoscaler
from ketch.serving.components import (
    Scaling,
    predictor_source,
    revision_hash,
    transformer_source,
)
from ketch.serving.payload_logger import PayloadLogger
from ketch.serving.router import ComponentRouter, RevisionStats, RevisionTraffic
from ketch.serving.router_host import RouterHost
from ketch.serving.spec import parse
from ketch.serving.upstream import ReplicaAddress
from tests.server.helpers import ThreadServer, free_port


def test_predictor_by_framework_or_model_format() -> None:
    spec = parse({"predictor": {"xgboost": {"storageUri": "s3://b/m", "protocolVersion": "v2"}}})
    source = predictor_source(spec.predictor)
    assert (source.format, source.uri, source.protocol) == ("xgboost", "s3://b/m", "v2")
    spec = parse(
        {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "file:///m"}}}
    )
    assert predictor_source(spec.predictor).format == "onnx"
    with pytest.raises(InvalidSpec, match="no local runtime"):
        predictor_source(
            parse(
                {"predictor": {"model": {"modelFormat": {"name": "triton"}, "storageUri": "x"}}}
            ).predictor
        )
    with pytest.raises(InvalidSpec, match="several models"):
        predictor_source(
            parse(
                {"predictor": {"sklearn": {"storageUri": "a"}, "onnx": {"storageUri": "b"}}}
            ).predictor
        )
    with pytest.raises(InvalidSpec) as info:
        parse({"predictor": {"canaryTrafficPercent": 130, "sklearn": {"storageUri": "a"}}})
    assert info.value.field == "spec.predictor.canaryTrafficPercent"


def test_scaling_fields_make_no_new_revision() -> None:
    base = {"sklearn": {"storageUri": "a"}}
    assert revision_hash(base) == revision_hash(
        {**base, "minReplicas": 3, "canaryTrafficPercent": 10}
    )
    assert revision_hash(base) != revision_hash({"sklearn": {"storageUri": "b"}})


def test_transformer_from_args_or_annotation(tmp_path: Path) -> None:
    file = tmp_path / "t.py"
    file.write_text("")
    spec = parse(
        {
            "predictor": {"sklearn": {"storageUri": "a"}},
            "transformer": {
                "containers": [{"image": "x", "args": ["--ketch-transformer", f"{file}:T"]}]
            },
        }
    )
    source = transformer_source(spec.transformer, {})
    assert source is not None and (source.uri, source.model_class) == (str(file), "T")
    source = transformer_source(None, {"serving.ketch.dev/transformer": "json.decoder:JSONDecoder"})
    assert source is not None and source.uri.endswith("decoder.py")
    with pytest.raises(InvalidSpec, match="cannot run locally"):
        transformer_source(
            parse({"predictor": {}, "transformer": {"containers": [{"image": "x"}]}}).transformer,
            {},
        )


def _stats(inflight: float, pending: int = 0, idle: float = 0.0) -> RevisionStats:
    return RevisionStats("r", int(inflight), inflight, pending, idle, 0)


def test_autoscaler_up_at_once_down_after_the_window() -> None:
    policy = Scaling(min_replicas=0, max_replicas=4, target=2, metric="concurrency", window=10.0)
    scaler = Autoscaler()
    assert scaler.desired(policy, _stats(7), 1, now=0.0) == 4
    assert scaler.desired(policy, _stats(1), 4, now=5.0) == 4  # within the window
    assert scaler.desired(policy, _stats(1), 4, now=16.0) == 1
    assert scaler.desired(policy, _stats(0, idle=30.0), 1, now=40.0) == 0
    assert scaler.desired(policy, _stats(0, pending=1), 0, now=41.0) == 1  # a request at zero
    policy = Scaling(min_replicas=2, max_replicas=3, target=1, metric="concurrency", window=1.0)
    assert Autoscaler().desired(policy, None, 0, now=0.0) == 2


def test_payload_logger_drops_when_full_and_never_blocks() -> None:
    async def main() -> PayloadLogger:
        logger = PayloadLogger(
            "http://127.0.0.1:9",
            "request",
            service="s",
            namespace="n",
            component="predictor",
            queue_size=2,
        )
        for index in range(5):
            logger.request(str(index), b"{}", "application/json", "rev")
            logger.response(str(index), b"{}", "application/json", "rev")  # mode: request only
        return logger

    logger = asyncio.run(main())
    assert logger.dropped == 3


async def _replica(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A stand-in replica: answers at once, or after 2 s for model 'slow'."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if "/slow/" in scope["path"]:
        await asyncio.sleep(2)
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_router_retries_a_dead_replica_and_times_out_a_slow_one() -> None:
    host = RouterHost()
    with ThreadServer(_replica, lifespan="off") as replica:
        live = int(replica.url.rsplit(":", 1)[1])
        router = ComponentRouter("unit", timeout=0.5)
        port = host.start(router)
        try:
            router.set_revisions(
                [
                    RevisionTraffic(
                        "r1",
                        100,
                        (
                            ReplicaAddress("dead", "127.0.0.1", free_port()),
                            ReplicaAddress("live", "127.0.0.1", live),
                        ),
                    )
                ]
            )
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for _ in range(5):
                    response = client.post("/v2/models/m/infer", json={})
                    assert response.status_code == 200, response.text
                    assert response.headers["ketch-revision"] == "r1"
                assert router.retries >= 1
                assert client.post("/v2/models/slow/infer", json={}).status_code == 504
                assert client.get("/v2/health/ready").status_code == 200
            stats = router.stats()["r1"]
            assert stats.inflight == 0 and stats.requests >= 6
        finally:
            host.stop(router)
            host.close()
