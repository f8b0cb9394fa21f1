"""A storage URI whose fsspec package is not installed: the real ``ketch`` names the
URI and the extra to install, and exits 2 without a traceback."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.cli.helpers import bad
from tests.server.helpers import base_env, ketch_command


@pytest.mark.parametrize(
    ("uri", "package", "extra"),
    [
        ("gs://bucket/model.joblib", "gcsfs", "gcs"),
        ("s3://bucket/model.joblib", "s3fs", "s3"),
        ("az://container/model.joblib", "adlfs", "azure"),
    ],
)
def test_serving_a_model_on_an_object_store_without_its_package(
    uri: str, package: str, extra: str, tmp_path: Path
) -> None:
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    result = subprocess.run(
        [*ketch_command(), "serve", uri, "--port", "0", "--grpc-port", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(tmp_path),
    )
    bad(result, 2, f"{uri} needs {package}: pip install 'ketch[{extra}]'")


def test_serving_a_model_from_an_unknown_protocol(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *ketch_command(),
            "serve",
            "gizmo://bucket/model.joblib",
            "--port",
            "0",
            "--grpc-port",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(tmp_path),
    )
    bad(result, 2, "unknown protocol 'gizmo://'", "ketch[s3]", "ketch[gcs]", "ketch[azure]")
