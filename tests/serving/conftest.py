"""Model servers for the serving tests: in-process (a thread) or ``ketch serve`` processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from ketch.serving.model import Model
from ketch.serving.repository import ServeOptions
from ketch.serving.server import ModelServer, ServerOptions, ServerThread

MODELS = Path(__file__).parent / "models"
KETCH = str(Path(sys.executable).parent / "ketch")
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)(?: \(grpc (127\.0\.0\.1:\d+)\))?")


@dataclass
class Iris:
    folder: Path
    model: LogisticRegression
    X: np.ndarray


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iris:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    folder = tmp_path_factory.mktemp("iris") / "iris"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    return Iris(folder, model, X)


@contextmanager
def serving(
    source: str | Path | None = None,
    *,
    models: list[Model] | None = None,
    grpc: bool = True,
    **model_options: Any,
) -> Iterator[ModelServer]:
    """An in-process model server on free ports, stopped on exit."""
    options = ServerOptions(
        http_port=0, grpc_port=0 if grpc else None, model=ServeOptions(**model_options), threads=2
    )
    server = ModelServer(str(source) if source is not None else None, options, models=models)
    with ServerThread(server):
        yield server


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    url: str
    grpc: str | None
    output: list[str]


@contextmanager
def ketch_serve(*args: str, timeout: float = 90.0) -> Iterator[ServeProcess]:
    """``ketch serve ARGS --port 0``; yields once it printed its URLs; SIGTERM on exit."""
    process = subprocess.Popen(
        [KETCH, "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        match = None
        assert process.stdout is not None
        while match is None:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"ketch serve exited early:\n{''.join(lines)}")
            lines.append(line)
            match = READY.search(line)
            if time.monotonic() > deadline:
                raise AssertionError(f"ketch serve did not start:\n{''.join(lines)}")
        yield ServeProcess(process, match.group(1), match.group(2), lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
