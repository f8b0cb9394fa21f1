"""ExitHandler, PipelineTaskFinalStatus and ignore_upstream_failure."""

import json

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

import ketch
from tests.pipelines.components import echo, fail, record
from tests.pipelines.helpers import read_lines


@dsl.component
def report_status(status: PipelineTaskFinalStatus, path: str) -> str:
    import json

    fields = {
        "state": status.state,
        "pipeline_job_resource_name": status.pipeline_job_resource_name,
        "pipeline_task_name": status.pipeline_task_name,
        "error_code": status.error_code,
        "error_message": status.error_message,
    }
    with open(path, "a") as f:
        f.write("exit-task-ran\n")
    return json.dumps(fields)


@dsl.pipeline(name="exit-handler-ok")
def exit_ok(path: str):
    final = report_status(path=path)
    with dsl.ExitHandler(final):
        first = record(path=path, label="first")
        record(path=path, label="second").after(first)


@dsl.pipeline(name="exit-handler-fails")
def exit_fails(path: str):
    final = report_status(path=path)
    with dsl.ExitHandler(final):
        f = fail(msg="inner task exploded")
        record(path=path, label="after-failure").after(f)


def test_exit_handler_after_success(tmp_path):
    marker = tmp_path / "marker.txt"
    run = ketch.run(exit_ok, arguments={"path": str(marker)})
    assert run.state == "SUCCEEDED", run.error
    # the exit task runs last, after everything in the handler
    assert read_lines(marker) == ["first", "second", "exit-task-ran"]
    assert run.tasks["exit-handler-1"].type == "dag"
    assert run.tasks["exit-handler-1"].state == "SUCCEEDED"
    exit_task = run.tasks["report-status"]
    assert exit_task.state == "SUCCEEDED"
    assert exit_task.started_at >= run.tasks["exit-handler-1/record-2"].finished_at
    status = json.loads(exit_task.outputs["Output"])
    assert status["state"] == "COMPLETE"  # the backend reports the MLMD execution state
    assert status["pipeline_task_name"] == "exit-handler-1"
    assert isinstance(status["pipeline_job_resource_name"], str)
    assert status["pipeline_job_resource_name"]
    assert status["error_code"] is None
    assert status["error_message"] is None


def test_exit_handler_after_failure(tmp_path):
    marker = tmp_path / "marker.txt"
    run = ketch.run(exit_fails, arguments={"path": str(marker)})
    assert run.state == "FAILED"
    assert "exit-handler-1/fail" in run.error or "fail" in run.error
    assert run.tasks["exit-handler-1/fail"].state == "FAILED"
    # the task after the failing one never ran; the exit task did
    assert read_lines(marker) == ["exit-task-ran"]
    assert run.tasks["exit-handler-1/record"].state in {"SKIPPED", "CANCELED", "PENDING"}
    assert run.tasks["exit-handler-1"].state == "FAILED"
    exit_task = run.tasks["report-status"]
    assert exit_task.state == "SUCCEEDED"
    status = json.loads(exit_task.outputs["Output"])
    assert status["state"] == "FAILED"
    assert status["pipeline_task_name"] == "exit-handler-1"
    assert status["pipeline_job_resource_name"]
    assert isinstance(status["error_code"], int) and status["error_code"] != 0
    assert isinstance(status["error_message"], str) and status["error_message"]


def test_exit_task_without_status_parameter(tmp_path):
    marker = tmp_path / "marker.txt"

    @dsl.pipeline(name="plain-exit-task")
    def p(path: str):
        cleanup = record(path=path, label="cleanup")
        with dsl.ExitHandler(cleanup, name="guarded"):
            fail(msg="nope")

    run = ketch.run(p, arguments={"path": str(marker)})
    assert run.state == "FAILED"
    assert read_lines(marker) == ["cleanup"]
    assert run.tasks["record"].state == "SUCCEEDED"


@dsl.pipeline(name="ignore-upstream")
def ignore_upstream(path: str):
    f = fail(msg="upstream broke")
    record(path=path, label="runs-anyway").after(f).ignore_upstream_failure()
    report_status(path=path).after(f).ignore_upstream_failure()


def test_ignore_upstream_failure(tmp_path):
    marker = tmp_path / "marker.txt"
    run = ketch.run(ignore_upstream, arguments={"path": str(marker)})
    assert run.state == "FAILED"
    assert run.tasks["fail"].state == "FAILED"
    assert run.tasks["record"].state == "SUCCEEDED"
    assert sorted(read_lines(marker)) == ["exit-task-ran", "runs-anyway"]
    status = json.loads(run.tasks["report-status"].outputs["Output"])
    assert status["state"] == "FAILED"
    assert status["pipeline_task_name"] == "fail"


def test_ignore_upstream_failure_after_success(tmp_path):
    marker = tmp_path / "marker.txt"

    @dsl.pipeline(name="ignore-upstream-ok")
    def p(path: str):
        e = echo(msg="fine")
        report_status(path=path).after(e).ignore_upstream_failure()

    run = ketch.run(p, arguments={"path": str(marker)})
    assert run.state == "SUCCEEDED", run.error
    status = json.loads(run.tasks["report-status"].outputs["Output"])
    assert status["state"] == "COMPLETE"  # the backend reports the MLMD execution state
    assert status["pipeline_task_name"] == "echo"
    assert status["error_code"] is None


def test_downstream_of_failed_task_does_not_run(tmp_path):
    marker = tmp_path / "marker.txt"

    @dsl.pipeline(name="fail-stops-downstream")
    def p(path: str):
        f = fail()
        record(path=path, label="downstream").after(f)
        record(path=path, label="independent")

    run = ketch.run(p, arguments={"path": str(marker)})
    assert run.state == "FAILED"
    assert run.tasks["record"].state != "SUCCEEDED"
    # an independent branch still finishes
    assert run.tasks["record-2"].state == "SUCCEEDED"
    assert read_lines(marker) == ["independent"]
