"""`ketch run` from the command line."""

import json
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from tests.pipelines.helpers import parse_json_output

SEVERAL = """
from kfp import dsl


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.component
def greet(name: str) -> str:
    return "hello " + name


@dsl.component
def make(text: str, out: dsl.Output[dsl.Dataset]):
    with open(out.path, "w") as f:
        f.write(text)
    out.metadata["size"] = len(text)


@dsl.pipeline(name="incrementer")
def incrementer(x: int = 1) -> int:
    return inc(x=inc(x=x).output).output


@dsl.pipeline(name="greeter")
def greeter(name: str = "world", tags: list = []) -> str:
    return greet(name=name).output


@dsl.pipeline(name="maker")
def maker(text: str = "abc") -> dsl.Dataset:
    return make(text=text).outputs["out"]
"""


@pytest.fixture
def several(tmp_path: Path) -> Path:
    path = tmp_path / "several.py"
    path.write_text(SEVERAL)
    return path


def test_run_py_with_pipeline_choice_and_params_json(several, ketch_cli):
    proc = ketch_cli(
        "run", several, "--pipeline", "incrementer", "--param", "x=41", "--output", "json"
    )
    assert proc.returncode == 0, proc.stderr
    result = parse_json_output(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    assert isinstance(result["id"], str) and result["id"]
    assert result["outputs"] == {"Output": 43}
    assert set(result["tasks"]) == {"inc", "inc-2"}
    for task in result["tasks"].values():
        assert task["state"] == "SUCCEEDED"
        assert task["cached"] is False


def test_param_values_are_json_else_strings(several, ketch_cli):
    proc = ketch_cli(
        "run",
        several,
        "--pipeline",
        "greeter",
        "--param",
        "name=ketch run",
        "--param",
        'tags=["a", 1]',
        "--output",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_json_output(proc.stdout)["outputs"] == {"Output": "hello ketch run"}

    # a JSON string literal stays a string even when it looks like a number
    proc = ketch_cli("run", several, "--pipeline", "greeter", "--param", 'name="123"', "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert parse_json_output(proc.stdout)["outputs"] == {"Output": "hello 123"}


def test_artifact_outputs_in_json(several, ketch_cli, tmp_path):
    root = tmp_path / "root"
    proc = ketch_cli(
        "run", several, "--pipeline", "maker", "--pipeline-root", root, "--output", "json"
    )
    assert proc.returncode == 0, proc.stderr
    result = parse_json_output(proc.stdout)
    artifact = result["outputs"]["Output"]
    if isinstance(artifact, list):
        [artifact] = artifact
    assert set(artifact) >= {"uri", "name", "type", "metadata"}
    assert artifact["metadata"] == {"size": 3}
    assert str(root) in artifact["uri"]
    assert "system.Dataset" in str(artifact["type"])


def test_several_pipelines_without_choice_is_bad_input(several, ketch_cli):
    proc = ketch_cli("run", several)
    assert proc.returncode == 2
    for name in ("incrementer", "greeter", "maker"):
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_summary_table(several, ketch_cli):
    proc = ketch_cli("run", several, "--pipeline", "incrementer")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "inc-2" in out
    assert "SUCCEEDED" in out
    # the run id is shown, so the run can be found again
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) >= 3


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline(name="compiled")
def compiled_pipeline(a: int, b: int = 2) -> int:
    return add(a=a, b=b).output


def test_run_compiled_yaml(tmp_path, ketch_cli):
    path = tmp_path / "compiled.yaml"
    compiler.Compiler().compile(compiled_pipeline, str(path))
    proc = ketch_cli("run", path, "--param", "a=40", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    result = parse_json_output(proc.stdout)
    assert result["outputs"] == {"Output": 42}
    assert result["tasks"]["add"]["state"] == "SUCCEEDED"


def test_no_cache_flag(tmp_path, ketch_cli):
    path = tmp_path / "compiled.yaml"
    compiler.Compiler().compile(compiled_pipeline, str(path))
    first = parse_json_output(ketch_cli("run", path, "-p", "a=1", "-o", "json").stdout)
    second = parse_json_output(ketch_cli("run", path, "-p", "a=1", "-o", "json").stdout)
    third = parse_json_output(
        ketch_cli("run", path, "-p", "a=1", "-o", "json", "--no-cache").stdout
    )
    assert first["tasks"]["add"]["cached"] is False
    assert second["tasks"]["add"]["cached"] is True
    assert third["tasks"]["add"]["cached"] is False
    assert len({first["id"], second["id"], third["id"]}) == 3


def test_platform_spec_document_is_accepted_with_warning(tmp_path, ketch_cli):
    path = tmp_path / "with_platform.yaml"
    compiler.Compiler().compile(compiled_pipeline, str(path))
    pipeline_spec = yaml.safe_load(path.read_text())
    platform_spec = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {
                    "executors": {
                        "exec-add": {"secretAsEnv": [{"secretName": "s", "keyToEnv": []}]}
                    }
                }
            }
        }
    }
    path.write_text(yaml.safe_dump(pipeline_spec) + "---\n" + yaml.safe_dump(platform_spec))
    proc = ketch_cli("run", path, "-p", "a=1", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert parse_json_output(proc.stdout)["outputs"] == {"Output": 3}
    assert "kubernetes" in proc.stderr.lower() or "platform" in proc.stderr.lower()
    assert "warn" in proc.stderr.lower() or "ignored" in proc.stderr.lower()


def test_json_output_is_one_object_even_on_failure(tmp_path, ketch_cli):
    path = tmp_path / "fails.py"
    path.write_text(
        "from kfp import dsl\n\n@dsl.component\ndef bad():\n    raise SystemExit(3)\n\n"
        "@dsl.pipeline(name='fails')\ndef fails():\n    bad()\n"
    )
    proc = ketch_cli("run", path, "--output", "json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["state"] == "FAILED"
    assert result["tasks"]["bad"]["state"] == "FAILED"


@pytest.mark.parametrize("what", ["directory", "binary", "binary-py"])
def test_directory_or_binary_file_is_bad_input(tmp_path, ketch_cli, what):
    if what == "directory":
        target = tmp_path / "pipelines"
        target.mkdir()
    else:
        target = tmp_path / ("p.py" if what == "binary-py" else "p.yaml")
        target.write_bytes(bytes(range(256)) * 4)
    proc = ketch_cli("run", target)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(target) in lines[0]
    assert ("is a directory" if what == "directory" else "is a binary file") in lines[0]


def test_cached_run_starts_no_warm_interpreter(tmp_path):
    """Warm interpreters start when a task first runs: a run whose tasks are all
    cached has none to wait for when it ends."""
    import ketch
    from ketch.core.backend.local import LocalBackend

    class Recording(LocalBackend):
        def __init__(self) -> None:
            super().__init__()
            self.prewarmed: list[tuple[str, ...]] = []

        def prewarm(self, python, preload=(), env=None, warmup=None):  # type: ignore[override]
            self.prewarmed.append(tuple(preload))
            return super().prewarm(python, preload, env, warmup)

    @dsl.component
    def double(x: int) -> int:
        return 2 * x

    @dsl.pipeline(name="warm-lazily")
    def p(x: int = 2) -> int:
        return double(x=x).output

    first_backend, second_backend = Recording(), Recording()
    try:
        first = ketch.run(p, backend=first_backend)
        assert first.state == "SUCCEEDED", first.error
        assert first_backend.prewarmed  # a task ran: the warm interpreter was started
        second = ketch.run(p, backend=second_backend)
        assert second.state == "SUCCEEDED", second.error
        assert second.tasks["double"].cached
        assert second_backend.prewarmed == []
    finally:
        first_backend.shutdown()
        second_backend.shutdown()
