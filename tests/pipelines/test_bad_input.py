"""Bad input raises InvalidSpec (CLI: exit 2, one clear message); failing components do not."""

import re
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

import ketch
from ketch.core.errors import InvalidSpec, KetchError
from tests.pipelines.components import add, fail, inc


@dsl.pipeline(name="two-step")
def two_step(n: int, label: str = "x") -> int:
    a = inc(x=n)
    return add(a=a.output, b=n).output


def _compiled(tmp_path: Path) -> dict:
    path = tmp_path / "good.yaml"
    compiler.Compiler().compile(two_step, str(path))
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, spec: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def _invalid_ir(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    spec = _compiled(tmp_path)
    del spec["root"]
    return _write(tmp_path, spec), {"n": 1}, ["root"]


def _not_a_pipeline(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    path = tmp_path / "not_a_pipeline.yaml"
    path.write_text("hello: world\nitems: [1, 2]\n")
    return path, {}, []


def _unknown_component(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    spec = _compiled(tmp_path)
    spec["root"]["dag"]["tasks"]["inc"]["componentRef"]["name"] = "comp-does-not-exist"
    return _write(tmp_path, spec), {"n": 1}, ["inc", "comp-does-not-exist"]


def _wrong_type(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    return _write(tmp_path, _compiled(tmp_path)), {"n": "three"}, ["n"]


def _missing_argument(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    return _write(tmp_path, _compiled(tmp_path)), {}, ["n"]


def _missing_task_input(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    spec = _compiled(tmp_path)
    del spec["root"]["dag"]["tasks"]["add"]["inputs"]["parameters"]["b"]
    return _write(tmp_path, spec), {"n": 1}, ["add", "b"]


def _cycle(tmp_path: Path) -> tuple[Path, dict, list[str]]:
    spec = _compiled(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    tasks["inc"]["dependentTasks"] = ["add"]
    tasks["inc"]["inputs"]["parameters"]["x"] = {
        "taskOutputParameter": {"producerTask": "add", "outputParameterKey": "Output"}
    }
    return _write(tmp_path, spec), {"n": 1}, ["inc", "add"]


CASES = {
    "invalid-ir": _invalid_ir,
    "not-a-pipeline": _not_a_pipeline,
    "unknown-component": _unknown_component,
    "wrong-parameter-type": _wrong_type,
    "missing-argument": _missing_argument,
    "missing-task-input": _missing_task_input,
    "dependency-cycle": _cycle,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_invalid_spec(case, tmp_path):
    path, arguments, words = CASES[case](tmp_path)
    with pytest.raises(InvalidSpec) as info:
        ketch.run(str(path), arguments=arguments)
    message = str(info.value)
    assert isinstance(info.value, KetchError)
    for word in words:
        assert word in message, (word, message)


def test_cycle_message_says_cycle(tmp_path):
    path, arguments, _ = _cycle(tmp_path)
    with pytest.raises(InvalidSpec, match=re.compile("cycl", re.IGNORECASE)):
        ketch.run(str(path), arguments=arguments)


def test_wrong_type_from_a_pipeline_function():
    with pytest.raises(InvalidSpec, match="n"):
        ketch.run(two_step, arguments={"n": [1, 2]})
    with pytest.raises(InvalidSpec, match="n"):
        ketch.run(two_step, arguments={"n": 1.5})


def test_bool_is_not_an_int():
    with pytest.raises(InvalidSpec, match="n"):
        ketch.run(two_step, arguments={"n": True})


def test_unknown_argument_is_rejected():
    with pytest.raises(InvalidSpec, match="nope"):
        ketch.run(two_step, arguments={"n": 1, "nope": 2})


def test_missing_file_and_unknown_pipeline_name(tmp_path):
    with pytest.raises(KetchError):
        ketch.run(str(tmp_path / "missing.yaml"))
    source = tmp_path / "p.py"
    source.write_text(
        "from kfp import dsl\n\n"
        "@dsl.component\ndef one() -> int:\n    return 1\n\n"
        "@dsl.pipeline(name='only')\ndef only():\n    one()\n"
    )
    with pytest.raises(InvalidSpec, match="other"):
        ketch.run(str(source), pipeline_name="other")


def test_python_file_with_several_pipelines_needs_a_name(tmp_path):
    source = tmp_path / "several.py"
    source.write_text(
        "from kfp import dsl\n\n"
        "@dsl.component\ndef one() -> int:\n    return 1\n\n"
        "@dsl.pipeline(name='first')\ndef first():\n    one()\n\n"
        "@dsl.pipeline(name='second')\ndef second():\n    one()\n"
    )
    with pytest.raises(InvalidSpec) as info:
        ketch.run(str(source))
    assert "first" in str(info.value) and "second" in str(info.value)


@dsl.pipeline(name="failing")
def failing():
    a = inc(x=1)
    fail(msg="the component blew up").after(a)


def test_failing_component_fails_the_run_without_raising():
    run = ketch.run(failing)
    assert run.state == "FAILED"
    assert run.tasks["inc"].state == "SUCCEEDED"
    task = run.tasks["fail"]
    assert task.state == "FAILED"
    assert task.error
    assert task.log_path and Path(task.log_path).is_file()
    assert "the component blew up" in Path(task.log_path).read_text()
    # run.error: the failing task, the tail of its stderr, and where its log is
    assert re.search(r"\bfail\b", run.error), run.error
    assert "the component blew up" in run.error
    assert task.log_path in run.error


# ---- the same through the CLI -------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_bad_input_exits_2(case, tmp_path, ketch_cli):
    path, arguments, words = CASES[case](tmp_path)
    params = [f"--param={k}={v}" for k, v in arguments.items()]
    proc = ketch_cli("run", path, *params)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    message = proc.stderr.strip()
    assert message, "no error message on stderr"
    for word in words:
        assert word in message, (word, message)


def test_cli_missing_file_exits_2(tmp_path, ketch_cli):
    proc = ketch_cli("run", tmp_path / "nowhere.yaml")
    assert proc.returncode == 2
    assert "nowhere.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_failing_component_exits_1(tmp_path, ketch_cli):
    source = tmp_path / "failing.py"
    source.write_text(
        "from kfp import dsl\n\n"
        "@dsl.component\n"
        "def explode():\n"
        "    raise RuntimeError('kaboom from explode')\n\n"
        "@dsl.pipeline(name='cli-failing')\n"
        "def cli_failing():\n"
        "    explode()\n"
    )
    proc = ketch_cli("run", source)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    output = proc.stdout + proc.stderr
    assert "explode" in output
    assert "kaboom from explode" in output
    assert re.search(r"\.log\b", output), "the log path is not shown"
