"""Pipelines the server and CLI tests submit (no ``from __future__ import annotations``:
the kfp SDK reads the real annotation objects)."""

from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl


@dsl.component(base_image="python:3.11")
def say(msg: str) -> str:
    print(f"hello from {msg}")
    return msg


@dsl.component(base_image="python:3.11")
def nap(seconds: float) -> float:
    import time

    print("napping", flush=True)
    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="hello-pipeline")
def hello(msg: str = "ketch") -> None:
    first = say(msg=msg).set_display_name("first")
    say(msg=first.output)


@dsl.pipeline(name="slow-pipeline")
def slow(seconds: float = 30.0) -> None:
    nap(seconds=seconds)


def hello_pipeline_ir(tmp_path: Path) -> dict[str, Any]:
    """A compiled two-task pipeline that prints a greeting (real kfp compiler)."""
    path = tmp_path / "hello.yaml"
    compiler.Compiler().compile(hello, str(path))
    return dict(yaml.safe_load(path.read_text()))
