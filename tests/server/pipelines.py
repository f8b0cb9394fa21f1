"""Pipelines the server tests submit (no ``from __future__ import annotations``:
the kfp SDK reads the real annotation objects)."""

from kfp import dsl


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
