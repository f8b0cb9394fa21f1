"""Small components shared by several pipeline tests.

Lightweight components carry their own source into the IR, so each function here
imports what it uses inside its body.
"""

from kfp import dsl


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.component
def echo(msg: str) -> str:
    print(msg)
    return msg


@dsl.component
def fail(msg: str = "boom"):
    import sys

    print(f"about to fail: {msg}", file=sys.stderr)
    raise RuntimeError(msg)


@dsl.component
def record(path: str, label: str) -> str:
    """Append ``label`` to the file at ``path``: proof that the task really ran."""
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@dsl.component
def sleep_window(path: str, label: str, seconds: float) -> str:
    """Sleep, writing the task's start and end times to ``path`` (one JSON line)."""
    import json
    import time

    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with open(path, "a") as f:
        f.write(json.dumps({"label": label, "start": start, "end": end}) + "\n")
    return label
