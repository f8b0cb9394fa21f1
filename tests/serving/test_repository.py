"""Model repositories: formats, folders, versions, storage URIs, load failures."""

from __future__ import annotations

import http.server
import shutil
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest

from ketch.serving.errors import InvalidSpec
from ketch.serving.formats import infer_format
from tests.serving.conftest import MODELS, Iris, serving


def predict_one(url: str, name: str, row: list[float]) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": row}]}
    return httpx.post(f"{url}/v2/models/{name}/infer", json=body)


def test_format_inference(tmp_path: Path, iris: Iris) -> None:
    assert infer_format(iris.folder) == "sklearn"
    assert infer_format(iris.folder / "model.joblib") == "sklearn"
    assert infer_format(MODELS / "echo.py") == "python"
    (tmp_path / "model.txt").write_text("tree\nversion=v4\n")
    assert infer_format(tmp_path / "model.txt") == "lightgbm"
    (tmp_path / "notes.txt").write_text("hello")
    assert infer_format(tmp_path / "notes.txt") is None
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(InvalidSpec, match="several formats"):
        infer_format(tmp_path)


def test_multi_model_folder_with_versions_and_a_failing_model(iris: Iris, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(iris.folder, repo / "plain")
    shutil.copytree(iris.folder, repo / "versioned" / "1")
    shutil.copytree(iris.folder, repo / "versioned" / "3")
    (repo / "broken").mkdir()
    shutil.copy(MODELS / "broken.py", repo / "broken" / "model.py")
    (repo / "unknown").mkdir()
    (repo / "unknown" / "weights.bin").write_bytes(b"\x00")
    with serving(repo, grpc=False) as server:
        url = server.url
        row = iris.X[0].tolist()
        assert predict_one(url, "plain", row).status_code == 200
        assert httpx.get(f"{url}/v2/models/versioned").json()["versions"] == ["3"]
        ok = httpx.post(
            f"{url}/v2/models/versioned/versions/3/infer",
            json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": row}]},
        )
        assert ok.status_code == 200 and ok.json()["model_version"] == "3"
        assert httpx.get(f"{url}/v2/models/versioned/versions/1").status_code == 404

        # A model whose load fails: not ready, and the loader's error says why.
        ready = httpx.get(f"{url}/v2/models/broken/ready")
        assert ready.status_code == 503
        assert "checksum mismatch" in ready.json()["error"]
        meta = httpx.get(f"{url}/v2/models/broken")
        assert meta.status_code == 503 and "checksum mismatch" in meta.json()["error"]
        infer = predict_one(url, "broken", row)
        assert infer.status_code == 503 and "failed to load" in infer.json()["error"]
        assert httpx.get(f"{url}/v1/models/broken").json()["ready"] is False
        unknown = httpx.get(f"{url}/v2/models/unknown/ready").json()["error"]
        assert "cannot tell the format" in unknown
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503

        index = {m["name"]: m for m in httpx.post(f"{url}/v2/repository/index").json()}
        assert index["broken"]["state"] == "UNAVAILABLE"
        assert "checksum" in index["broken"]["reason"]
        assert index["plain"]["state"] == "READY"
        ready_only = httpx.post(f"{url}/v2/repository/index", json={"ready": True}).json()
        assert {m["name"] for m in ready_only} == {"plain", "versioned"}

        # Load failures answer 400 with the reason; unload then load brings a model back.
        failed = httpx.post(f"{url}/v2/repository/models/broken/load")
        assert failed.status_code == 400 and "checksum" in failed.json()["error"]
        assert httpx.post(f"{url}/v2/repository/models/plain/unload").status_code == 200
        gone = predict_one(url, "plain", row)
        assert gone.status_code == 503 and "unloaded" in gone.json()["error"]
        assert httpx.post(f"{url}/v2/repository/models/plain/load").json() == {
            "name": "plain",
            "load": True,
        }
        assert predict_one(url, "plain", row).status_code == 200
        assert httpx.post(f"{url}/v2/repository/models/ghost/load").status_code == 404


def test_file_uri_and_single_file(iris: Iris) -> None:
    with serving(f"file://{iris.folder / 'model.joblib'}", grpc=False, name="fromfile") as server:
        response = predict_one(server.url, "fromfile", iris.X[50].tolist())
        assert response.json()["outputs"][0]["data"] == iris.model.predict(iris.X[50:51]).tolist()


@contextmanager
def http_files(folder: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_http_archive_uri(iris: Iris, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    monkeypatch.setenv("KETCH_HOME", str(tmp_path / "home"))
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "iris.tar.gz", "w:gz") as archive:
        archive.add(iris.folder, arcname="iris")
    with http_files(site) as base:
        with serving(f"{base}/iris.tar.gz", grpc=False, name="remote") as server:
            response = predict_one(server.url, "remote", iris.X[100].tolist())
            assert response.status_code == 200, response.text
            assert (
                response.json()["outputs"][0]["data"]
                == iris.model.predict(iris.X[100:101]).tolist()
            )
    assert any((tmp_path / "home" / "cache" / "models").iterdir())
