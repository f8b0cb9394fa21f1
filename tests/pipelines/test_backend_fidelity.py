"""Where the KFP backend's behavior is subtle, Ketch matches it: values handed to
components, resource fields from parameters, run placeholders, final task status,
packages_to_install, artifact placeholders and task errors."""

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Output, OutputPath, PipelineTaskFinalStatus

import ketch
from tests.pipelines.helpers import cli_command, cli_env

# -------------------------------------------------------------- 1. numbers


@dsl.component
def describe(xs: list, d: dict, n: int = 3) -> str:
    import json

    def kinds(value):  # the Python type names, nested
        if isinstance(value, list):
            return [kinds(v) for v in value]
        if isinstance(value, dict):
            return {k: kinds(v) for k, v in value.items()}
        return type(value).__name__

    return json.dumps({"xs": xs, "d": d, "n": n, "kinds": kinds([xs, d, n])})


@dsl.component
def describe_item(item: int) -> str:
    return type(item).__name__


@dsl.component
def describe_float(x: float) -> str:
    return type(x).__name__


def test_constant_lists_and_dicts_hold_integers_as_the_backend_passes_them():
    @dsl.pipeline(name="constant-numbers")
    def p(defaults: list = [4, 5.5, [6]]) -> str:  # noqa: B006 - a KFP default
        describe(xs=defaults, d={"a": 1, "b": [2, 3.25]})
        with dsl.ParallelFor([7, 8]) as item:
            describe_item(item=item)
        describe_float(x=2.0)  # a double with no fraction reaches the component as an int
        return describe(xs=[1, 2, 3], d={"k": {"n": 10}}).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    got = json.loads(run.outputs["Output"])
    assert got["xs"] == [1, 2, 3]
    assert got["kinds"] == [["int", "int", "int"], {"k": {"n": "int"}}, "int"]
    first = json.loads(run.tasks["describe"].outputs["Output"])
    # a default list and a dict constant: integral numbers are ints, the rest stay floats
    assert first["kinds"] == [["int", "float", ["int"]], {"a": "int", "b": ["int", "float"]}, "int"]
    assert run.tasks["describe-float"].outputs["Output"] == "int"
    items = [t for path, t in run.tasks.items() if path.endswith("/describe-item")]
    assert len(items) == 2 and all(t.outputs["Output"] == "int" for t in items)


# -------------------------------------------------------------- 2. resources


@dsl.component
def cpu_from_task() -> str:
    return "500m"


@dsl.component
def noop() -> str:
    return "ran"


def _resource_pipeline():
    @dsl.pipeline(name="resources-from-params")
    def p(
        cpu: str = "1", memory: str = "1Gi", acc_type: str = "nvidia.com/gpu", acc_count: str = "0"
    ):
        request = cpu_from_task()
        noop().set_cpu_limit(cpu).set_memory_limit(memory).set_cpu_request(
            request.output
        ).set_memory_request(memory).set_accelerator_type(acc_type).set_accelerator_limit(acc_count)

    return p


def test_resources_set_from_parameters_and_task_outputs_are_resolved():
    run = ketch.run(_resource_pipeline(), arguments={"cpu": "2", "memory": "512Mi"})
    assert run.state == "SUCCEEDED", run.error
    res = run.tasks["noop"].resources
    assert res["cpu_limit"] == "2"
    assert res["cpu_request"] == "500m"
    assert res["memory_limit"] == "512Mi"
    assert res["memory_request"] == "512Mi"
    assert res["accelerator_type"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"cpu": "lots"}, "set_cpu_limit"),
        ({"memory": "big"}, "set_memory_"),
        ({"acc_count": "two"}, "set_accelerator_limit"),
    ],
)
def test_bad_resolved_resource_value_fails_the_task_clearly(arguments, named):
    run = ketch.run(_resource_pipeline(), arguments=arguments)
    assert run.state == "FAILED"
    error = run.tasks["noop"].error
    assert named in error
    assert next(iter(arguments.values())) in error
    assert "internal error" not in error and "Traceback" not in error


# -------------------------------------------------------------- 3. run placeholders


@dsl.component
def show_run(
    job_name: str, resource_name: str, job_uuid: str, task_name: str, task_uuid: str
) -> str:
    import json

    return json.dumps([job_name, resource_name, job_uuid, task_name, task_uuid])


def test_run_placeholders_match_the_backend():
    @dsl.pipeline(name="run-placeholders")
    def p() -> str:
        return show_run(
            job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
            job_uuid=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            task_uuid=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
        ).output

    run = ketch.run(p, display_name="my display name")
    assert run.state == "SUCCEEDED", run.error
    job_name, resource_name, job_uuid, task_name, task_uuid = json.loads(run.outputs["Output"])
    assert job_name == "my display name"
    # the Argo workflow's name: generateName "<pipeline name>-" and 5 characters
    assert re.fullmatch(r"run-placeholders-[bcdfghjklmnpqrstvwxz2456789]{5}", resource_name)
    assert job_uuid == run.id
    assert task_name == "show-run"
    assert task_uuid


# -------------------------------------------------------------- 4. final status


@dsl.component
def final_state(status: PipelineTaskFinalStatus) -> str:
    import json

    return json.dumps(
        {
            "state": status.state,
            "resource": status.pipeline_job_resource_name,
            "task": status.pipeline_task_name,
        }
    )


@dsl.component
def boom():
    raise ValueError("inner task exploded")


@dsl.component
def ok() -> str:
    return "ok"


def test_final_status_uses_the_execution_states_of_the_backend():
    @dsl.pipeline(name="final-complete")
    def good():
        exit_task = final_state()
        with dsl.ExitHandler(exit_task):
            ok()

    @dsl.pipeline(name="final-failed")
    def bad():
        exit_task = final_state()
        with dsl.ExitHandler(exit_task):
            boom()

    first = ketch.run(good)
    assert first.state == "SUCCEEDED", first.error
    status = json.loads(first.tasks["final-state"].outputs["Output"])
    assert status["state"] == "COMPLETE"
    assert status["task"] == "exit-handler-1"
    assert re.fullmatch(r"final-complete-[a-z0-9]{5}", status["resource"])

    second = ketch.run(bad)
    assert second.state == "FAILED"
    status = json.loads(second.tasks["final-state"].outputs["Output"])
    assert status["state"] == "FAILED"


def test_final_status_of_a_cached_upstream_is_cached():
    @dsl.pipeline(name="final-cached")
    def p():
        upstream = ok()
        final_state().after(upstream).ignore_upstream_failure()

    first = ketch.run(p)
    assert first.state == "SUCCEEDED", first.error
    assert json.loads(first.tasks["final-state"].outputs["Output"])["state"] == "COMPLETE"
    second = ketch.run(p)
    assert second.tasks["ok"].cached
    assert json.loads(second.tasks["final-state"].outputs["Output"])["state"] == "CACHED"


# -------------------------------------------------------------- 5. packages_to_install


@dsl.component(packages_to_install=["click-option-group==0.5.6"])
def pinned_version() -> str:
    from importlib.metadata import version

    return version("click-option-group")


@pytest.mark.slow
def test_pin_that_conflicts_with_kfps_own_dependencies_installs_as_on_kfp():
    """kfp pins click-option-group==0.5.7; KFP installs kfp with --no-deps, so a
    component may pin another version."""
    if metadata.version("click-option-group") == "0.5.6":
        pytest.skip("the pinned version is installed already; the test needs a conflict")

    @dsl.pipeline(name="conflicting-pin")
    def p() -> str:
        return pinned_version().output

    run = ketch.run(p, enable_caching=False)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "0.5.6"}


# -------------------------------------------------------------- 6. artifact placeholders


@dsl.component
def make_artifact(out: Output[Artifact]):
    from pathlib import Path

    Path(out.path).write_text("x")


@dsl.container_component
def echo_list(items: Input[list[Artifact]], out: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=["sh", "-c", 'mkdir -p "$(dirname "$0")"; printf "%s" "$1" > "$0"'],
        args=[out, items],
    )


def test_whole_artifact_placeholder_is_passed_as_the_backend_passes_it():
    @dsl.pipeline(name="artifact-list-placeholder")
    def p() -> str:
        with dsl.ParallelFor([1, 2]):
            made = make_artifact()
        return echo_list(items=dsl.Collected(made.outputs["out"])).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert any("alpine:3" in w and "not used" in w for w in run.warnings), run.warnings
    # the KFP launcher has no value for a whole artifact list: the text goes through
    # unresolved, never one artifact's URI picked silently
    assert run.outputs["Output"] == "{{$.inputs.artifacts['items']}}"


# -------------------------------------------------------------- 7. task errors


@dsl.component
def flaky(marker: str) -> str:
    from pathlib import Path

    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails")
    return "second attempt"


def test_error_of_a_task_that_succeeded_on_retry_is_cleared(tmp_path):
    @dsl.pipeline(name="retry-clears-error")
    def p(marker: str) -> str:
        return flaky(marker=marker).set_retry(num_retries=1, backoff_duration="0s").output

    run = ketch.run(p, arguments={"marker": str(tmp_path / "marker")})
    assert run.state == "SUCCEEDED", run.error
    task = run.tasks["flaky"]
    assert task.attempts == 2
    assert task.error is None


def test_failed_python_component_error_leads_with_the_exception():
    @dsl.pipeline(name="error-leads")
    def p():
        boom()

    run = ketch.run(p)
    assert run.state == "FAILED"
    error = run.tasks["boom"].error
    assert error.splitlines()[0].startswith("ValueError: inner task exploded")
    assert "exit code 1" in error.splitlines()[0]
    assert "full log:" in error


# -------------------------------------------------------------- 8. host commands


@dsl.container_component
def shell_typo():
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", "frobnicate-nothing --now"])


def test_cli_warns_once_that_images_are_not_used_and_reports_shell_errors(tmp_path):
    @dsl.pipeline(name="host-commands")
    def p():
        shell_typo()
        shell_typo()

    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(p, str(package))
    proc = subprocess.run(
        [*cli_command(), "run", str(package), "-o", "json"],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("alpine:3.19") == 1, proc.stderr
    assert "not used" in proc.stderr
    result = json.loads(proc.stdout)
    error = result["tasks"]["shell-typo"]["error"]
    assert error.startswith("shell error: a command was not found on this host (sh)")
    assert "frobnicate-nothing" in error.splitlines()[0]


@dsl.container_component
def shell_name(shell: str, out: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=[shell, "-c", 'mkdir -p "$(dirname "$0")"; cat /proc/$$/comm > "$0"'],
        args=[out],
    )


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs /proc")
def test_the_shell_the_pipeline_names_is_the_shell_that_runs():
    @dsl.pipeline(name="shells")
    def p():
        shell_name(shell="sh")

    @dsl.pipeline(name="shells-bash")
    def q():
        shell_name(shell="bash")

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["shell-name"].outputs["out"].strip() == "sh"
    bash = ketch.run(q)
    assert bash.state == "SUCCEEDED", bash.error
    assert bash.tasks["shell-name"].outputs["out"].strip() == "bash"
