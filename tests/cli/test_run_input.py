"""``ketch run`` refuses bad options with exit 2 and one line naming the option,
before it runs anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.helpers import bad
from tests.server.helpers import base_env, ketch_command

PIPELINE = """\
from kfp import dsl


@dsl.component
def add(a: int, b: float) -> float:
    return a + b


@dsl.pipeline
def adder(a: int, b: float = 1.5):
    add(a=a, b=b)
"""


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-p", "a=1", "--max-parallelism", "0"], ["--max-parallelism", "1 or more"]),
        (["-p", "a=1", "--max-parallelism", "-2"], ["--max-parallelism"]),
        (["-p", "=1"], ["--param", "KEY=VALUE"]),
        (["-p", "a"], ["--param", "KEY=VALUE"]),
        (["-p", "a=1", "-p", "a=2"], ["--param", "'a' is given more than once"]),
        (["-p", "a=1", "-o", "xml"], ["--output"]),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    args: list[str], fragments: list[str], tmp_path: Path
) -> None:
    pipeline = tmp_path / "adder.py"
    pipeline.write_text(PIPELINE)
    result = subprocess.run(
        [*ketch_command(), "run", str(pipeline), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(tmp_path / "home"),
    )
    bad(result, 2, *fragments)
    assert not (tmp_path / "home" / "runs").exists()  # nothing ran
