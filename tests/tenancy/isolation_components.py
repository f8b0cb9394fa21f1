"""A pipeline whose one task tries to read a file (no ``from __future__ import
annotations`` here: the KFP SDK reads the annotations as types)."""

from google.protobuf import json_format
from kfp import dsl


@dsl.component
def peek(other: str, seen: dsl.Output[dsl.Artifact]) -> str:
    import os

    try:
        with open(other) as f:
            result = "read " + f.read().strip()
    except PermissionError as exc:
        result = f"PermissionError {exc.errno}"
    with open(seen.path, "w") as f:
        f.write(result)
    return f"{result} uid={os.getuid()}"


@dsl.pipeline(name="peek")
def peek_pipeline(other: str) -> str:
    return peek(other=other).outputs["Output"]


PEEK = json_format.MessageToDict(peek_pipeline.pipeline_spec)
