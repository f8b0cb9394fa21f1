"""The real ``kfp.Client`` against a real Ketch server on 127.0.0.1.

One server per module (and per database backend); every test works in its own
experiment or under unique names, so tests do not see each other's objects.
"""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kfp
import pytest
import yaml
from kfp import compiler, dsl
from kfp_server_api.exceptions import ApiException

from tests.pipelines.kfp_server import BACKENDS, ServerProcess, serve
from tests.waiting import poll, wait_for

pytestmark = pytest.mark.timeout(240)


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.component
def nap(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "rested"


@dsl.pipeline(name="kfp-client-adder")
def adder(x: int = 1, y: int = 2) -> int:
    first = add(a=x, b=y)
    return add(a=first.output, b=10).output


@dsl.pipeline(name="kfp-client-sleeper")
def sleeper(seconds: float = 120.0):
    nap(seconds=seconds)


@pytest.fixture(
    scope="module",
    params=[b if b == "sqlite" else pytest.param(b, marks=pytest.mark.postgres) for b in BACKENDS],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve(request.param, tmp_path_factory.mktemp("kfp-client-server"))


@pytest.fixture
def client(server: ServerProcess) -> kfp.Client:
    return kfp.Client(host=server.url)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "adder.yaml"
    compiler.Compiler().compile(adder, str(path))
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_state(
    client: kfp.Client, run_id: str, states: tuple[str, ...], timeout: float = 60
) -> Any:
    run: Any = None

    def reached() -> bool:
        nonlocal run
        run = client.get_run(run_id)
        return run.state in states

    if not poll(reached, timeout, 0.1):
        raise AssertionError(f"run {run_id} is {run.state}, not one of {states}")
    return run


def test_create_run_from_pipeline_func(client: kfp.Client) -> None:
    result = client.create_run_from_pipeline_func(adder, arguments={"x": 5, "y": 6})
    run = client.wait_for_run_completion(result.run_id, timeout=120, sleep_duration=0.2)
    assert run.state == "SUCCEEDED"
    assert run.runtime_config.parameters == {"x": 5, "y": 6}
    assert run.pipeline_spec["pipelineInfo"]["name"] == "kfp-client-adder"
    assert run.created_at is not None and run.finished_at is not None
    assert [h.state for h in run.state_history] == ["PENDING", "RUNNING", "SUCCEEDED"]
    tasks = run.run_details.task_details
    assert sorted(t.display_name for t in tasks) == ["add", "add-2"]
    for task in tasks:
        assert task.state == "SUCCEEDED"
        assert task.execution_id and task.start_time and task.end_time
    # runs without an experiment go to the namespace's "Default" experiment
    default = client.get_experiment(experiment_name="Default")
    assert run.experiment_id == default.experiment_id


def test_create_run_from_pipeline_package_with_platform_spec(
    client: kfp.Client, package: Path
) -> None:
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    with package.open("a") as f:
        f.write("---\n" + yaml.safe_dump(platform))
    name = unique("pkg")
    result = client.create_run_from_pipeline_package(
        str(package), arguments={"x": 1}, run_name="from-package", experiment_name=name
    )
    run = client.wait_for_run_completion(result.run_id, timeout=120, sleep_duration=0.2)
    assert run.state == "SUCCEEDED"
    assert run.display_name == "from-package"
    experiment = client.get_experiment(experiment_name=name)
    assert run.experiment_id == experiment.experiment_id


def test_upload_pipeline_version_and_run_pipeline(client: kfp.Client, package: Path) -> None:
    name = unique("uploaded")
    pipeline = client.upload_pipeline(str(package), pipeline_name=name, description="first")
    assert pipeline.display_name == name and pipeline.description == "first"
    assert client.get_pipeline_id(name) == pipeline.pipeline_id
    assert client.get_pipeline_id(unique("missing")) is None
    assert client.get_pipeline(pipeline.pipeline_id).name == name

    version = client.upload_pipeline_version(
        str(package), "v2", pipeline_name=name, description="second"
    )
    assert version.pipeline_id == pipeline.pipeline_id
    assert version.display_name == "v2"
    assert version.pipeline_spec["pipelineInfo"]["name"] == "kfp-client-adder"
    versions = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc")
    assert versions.total_size == 2
    assert versions.pipeline_versions[0].pipeline_version_id == version.pipeline_version_id
    got = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert got.description == "second"

    experiment = client.create_experiment(unique("runs-of-uploaded"))
    run = client.run_pipeline(
        experiment.experiment_id,
        "from-version",
        pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id,
        params={"x": 2, "y": 3},
    )
    done = client.wait_for_run_completion(run.run_id, timeout=120, sleep_duration=0.2)
    assert done.state == "SUCCEEDED"
    assert done.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert done.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id

    listed = client.list_pipelines(
        filter=f'{{"predicates":[{{"key":"name","operation":"IS_SUBSTRING","string_value":"{name}"}}]}}'
    )
    assert [p.pipeline_id for p in listed.pipelines] == [pipeline.pipeline_id]

    with pytest.raises(ApiException) as err:
        client.delete_pipeline(pipeline.pipeline_id)  # it still has versions
    assert err.value.status == 409
    client.delete_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert client.list_pipeline_versions(pipeline.pipeline_id).total_size == 1
    client.pipelines.pipeline_service_delete_pipeline(
        pipeline_id=pipeline.pipeline_id, cascade=True
    )
    with pytest.raises(ApiException) as err:
        client.get_pipeline(pipeline.pipeline_id)
    assert err.value.status == 404


def test_experiments(client: kfp.Client) -> None:
    name = unique("exp")
    experiment = client.create_experiment(name, description="about it")
    assert experiment.display_name == name and experiment.storage_state == "AVAILABLE"
    assert client.create_experiment(name).experiment_id == experiment.experiment_id  # get-or-create
    assert client.get_experiment(experiment_id=experiment.experiment_id).description == "about it"
    assert client.get_experiment(experiment_name=name).experiment_id == experiment.experiment_id
    listed = client.list_experiments(page_size=100, sort_by="created_at desc")
    assert experiment.experiment_id in [e.experiment_id for e in listed.experiments]
    assert "Default" in [e.display_name for e in listed.experiments]

    client.archive_experiment(experiment.experiment_id)
    assert client.get_experiment(experiment_id=experiment.experiment_id).storage_state == "ARCHIVED"
    client.unarchive_experiment(experiment.experiment_id)
    assert (
        client.get_experiment(experiment_id=experiment.experiment_id).storage_state == "AVAILABLE"
    )
    client.delete_experiment(experiment.experiment_id)
    with pytest.raises(ApiException) as err:
        client.get_experiment(experiment_id=experiment.experiment_id)
    assert err.value.status == 404


def test_list_runs_pages(client: kfp.Client, package: Path) -> None:
    experiment = client.create_experiment(unique("paging"))
    ids = []
    for i in range(3):
        run = client.run_pipeline(
            experiment.experiment_id,
            f"run-{i}",
            pipeline_package_path=str(package),
            params={"x": i},
        )
        ids.append(run.run_id)
    first = client.list_runs(
        experiment_id=experiment.experiment_id, page_size=2, sort_by="created_at desc"
    )
    assert first.total_size == 3
    assert [r.run_id for r in first.runs] == ids[::-1][:2]
    assert first.next_page_token
    second = client.list_runs(
        experiment_id=experiment.experiment_id,
        page_size=2,
        page_token=first.next_page_token,
        sort_by="created_at desc",
    )
    assert [r.run_id for r in second.runs] == ids[:1]
    assert not second.next_page_token
    for run_id in ids:
        assert (
            client.wait_for_run_completion(run_id, timeout=120, sleep_duration=0.2).state
            == "SUCCEEDED"
        )
    default_namespace = client.list_runs(page_size=100)
    assert set(ids) <= {r.run_id for r in default_namespace.runs}


def test_terminate_run(client: kfp.Client) -> None:
    result = client.create_run_from_pipeline_func(
        sleeper, arguments={"seconds": 120.0}, experiment_name=unique("terminate")
    )
    wait_state(client, result.run_id, ("RUNNING",))
    wait_for(
        lambda: client.get_run(result.run_id).run_details.task_details,
        30,
        0.1,
        what="the run's task has started",
    )
    started = time.monotonic()
    client.terminate_run(result.run_id)
    run = wait_state(client, result.run_id, ("CANCELED",), timeout=30)
    assert time.monotonic() - started < 30
    assert run.finished_at is not None
    states = [t.state for t in run.run_details.task_details]
    assert states == ["CANCELED"]
    # a finished run cannot be terminated: the KFP backend answers 400
    with pytest.raises(ApiException) as err:
        client.terminate_run(result.run_id)
    assert err.value.status == 400
    assert "Failed to terminate a run" in str(err.value.body)


def test_recurring_run(client: kfp.Client, package: Path) -> None:
    experiment = client.create_experiment(unique("recurring"))
    recurring = client.create_recurring_run(
        experiment.experiment_id,
        unique("every-second"),
        interval_second=1,
        pipeline_package_path=str(package),
        params={"x": 3},
        max_concurrency=2,
    )
    assert recurring.status == "ENABLED"
    assert recurring.trigger.periodic_schedule.interval_second == "1"
    runs = poll(lambda: client.list_runs(experiment_id=experiment.experiment_id).runs, 60, 0.2)
    assert runs, "the recurring run created no run"
    assert runs[0].recurring_run_id == recurring.recurring_run_id
    assert runs[0].runtime_config.parameters == {"x": 3}

    client.disable_recurring_run(recurring.recurring_run_id)
    assert client.get_recurring_run(recurring.recurring_run_id).status == "DISABLED"
    time.sleep(0.5)  # a fire that was under way when it was disabled has finished
    count = client.list_runs(experiment_id=experiment.experiment_id).total_size
    time.sleep(2.5)
    assert client.list_runs(experiment_id=experiment.experiment_id).total_size == count
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert [r.recurring_run_id for r in listed.recurring_runs] == [recurring.recurring_run_id]

    client.delete_recurring_run(recurring.recurring_run_id)
    with pytest.raises(ApiException) as err:
        client.get_recurring_run(recurring.recurring_run_id)
    assert err.value.status == 404


def test_archive_and_delete_run(client: kfp.Client) -> None:
    result = client.create_run_from_pipeline_func(adder, experiment_name=unique("archive"))
    client.wait_for_run_completion(result.run_id, timeout=120, sleep_duration=0.2)
    client.archive_run(result.run_id)
    assert client.get_run(result.run_id).storage_state == "ARCHIVED"
    client.unarchive_run(result.run_id)
    assert client.get_run(result.run_id).storage_state == "AVAILABLE"
    client.delete_run(result.run_id)
    with pytest.raises(ApiException) as err:
        client.get_run(result.run_id)
    assert err.value.status == 404


def test_delete_running_run(client: kfp.Client) -> None:
    result = client.create_run_from_pipeline_func(
        sleeper, arguments={"seconds": 120.0}, experiment_name=unique("delete-running")
    )
    wait_state(client, result.run_id, ("RUNNING",))
    started = time.monotonic()
    client.delete_run(result.run_id)  # stops it first
    assert time.monotonic() - started < 30
    with pytest.raises(ApiException) as err:
        client.get_run(result.run_id)
    assert err.value.status == 404


def test_unknown_ids_are_404(client: kfp.Client) -> None:
    for call in (
        lambda: client.get_run("no-such-run"),
        lambda: client.get_pipeline("no-such-pipeline"),
        lambda: client.get_experiment(experiment_id="no-such-experiment"),
        lambda: client.get_recurring_run("no-such-recurring-run"),
        lambda: client.terminate_run("no-such-run"),
    ):
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 404


def test_run_of_a_killed_ketch_run_reads_as_failed(
    server: ServerProcess, client: kfp.Client, tmp_path: Path
) -> None:
    """A `ketch run` in the server's home owns its run: the live server never takes it
    over, and once that process is killed the API reports the run FAILED and why."""
    import os
    import re
    import signal
    import subprocess

    from tests.pipelines.helpers import cli_command, cli_env

    package = tmp_path / "sleeper.yaml"
    compiler.Compiler().compile(sleeper, str(package))
    env = cli_env()
    env["KETCH_HOME"] = str(server.home)
    if server.database_url:
        env["KETCH_DATABASE_URL"] = server.database_url
    proc = subprocess.Popen(
        [*cli_command(), "run", str(package), "-p", "seconds=120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        run_id = ""
        for line in proc.stderr:
            found = re.search(r"run ([0-9a-f-]{36}) started", line)
            if found:
                run_id = found.group(1)
                break
        assert run_id, proc.wait(30)
        nap_running = poll(
            lambda: any(
                t.state == "RUNNING"
                for t in client.get_run(run_id).run_details.task_details or []
                if t.display_name == "nap"
            ),
            60,
            0.1,
        )
        assert nap_running, client.get_run(run_id)
        assert client.get_run(run_id).state == "RUNNING"  # owned by a live process: left alone
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)
    run = wait_state(client, run_id, ("FAILED",), timeout=30)
    assert "owner process died" in run.error.message
