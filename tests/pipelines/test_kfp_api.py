"""The KFP v2beta1 API over HTTP: filters, pages, sorting, errors, retry,
artifacts, pipelines/versions by JSON, recurring-run triggers and scheduling."""

import base64
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kfp import dsl

from ketch.core.errors import InvalidSpec
from ketch.core.store.db import Database
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.filters import filter_clauses
from ketch.pipelines.scheduler import Scheduler, Trigger, check_cron, check_trigger
from ketch.pipelines.tables import MIGRATIONS, KfpRecurringRunRow, PipelineRunRow
from tests.pipelines.kfp_server import BACKENDS, ServerProcess, serve

pytestmark = pytest.mark.timeout(240)
API = "/apis/v2beta1"


@dsl.component
def record(path: str, label: str) -> str:
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@dsl.component
def flaky(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("failing the first time on purpose")
    return "second time lucky"


@dsl.component
def write_dataset(text: str, data: dsl.Output[dsl.Dataset]):
    with open(data.path, "w") as f:
        f.write(text)


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.pipeline(name="api-retry")
def retry_pipeline(log: str, marker: str):
    first = record(path=log, label="first")
    flaky(marker=marker).after(first)


@dsl.pipeline(name="api-artifact")
def artifact_pipeline(text: str = "hello artifact"):
    write_dataset(text=text)


@dsl.pipeline(name="api-inc")
def inc_pipeline(x: int = 1):
    inc(x=x)


def ir(pipeline: Any) -> dict[str, Any]:
    return ir_loader.load(pipeline).spec


@pytest.fixture(
    scope="module",
    params=[b if b == "sqlite" else pytest.param(b, marks=pytest.mark.postgres) for b in BACKENDS],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve(request.param, tmp_path_factory.mktemp("kfp-api-server"))


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "code", "details"}
    return str(body["message"])


def experiment(http: httpx.Client) -> str:
    return ok(http.post("/experiments", json={"display_name": unique("exp")}))["experiment_id"]


def wait_run(http: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = ok(http.get(f"/runs/{run_id}"))
        if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(0.1)


def insert_runs(db_url: str, experiment_id: str, count: int, start: datetime) -> list[str]:
    """Runs written straight into the store (what the list pages read)."""
    ids = []
    with Database(db_url) as database:
        database.migrate([MIGRATIONS])
        with database.session() as s:
            for i in range(count):
                run_id = str(uuid.uuid4())
                ids.append(run_id)
                s.add(
                    PipelineRunRow(
                        id=run_id,
                        display_name=f"stored-{i:03d}",
                        pipeline_name="stored",
                        namespace="default",
                        experiment_id=experiment_id,
                        owner="test",
                        state=("SUCCEEDED", "FAILED", "RUNNING")[i % 3],
                        storage_state="AVAILABLE",
                        pipeline_spec={"pipelineInfo": {"name": "stored"}},
                        parameters={"i": i},
                        pipeline_root="/tmp",
                        outputs={},
                        created_at=start + timedelta(seconds=i),
                        finished_at=None if i % 3 == 2 else start + timedelta(seconds=i + 1),
                    )
                )
    return ids


def predicates(*preds: dict[str, Any]) -> dict[str, str]:
    return {"filter": json.dumps({"predicates": list(preds)})}


# ---------------------------------------------------------------- listing


def test_healthz(http: httpx.Client) -> None:
    assert ok(http.get("/healthz")) == {"multi_user": False, "pipeline_store": "database"}


def test_run_pages_sort_and_filters(http: httpx.Client, server: ServerProcess) -> None:
    exp = experiment(http)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ids = insert_runs(server.db_url, exp, 25, start)

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params: dict[str, Any] = {
            "experiment_id": exp,
            "page_size": 10,
            "sort_by": "created_at desc",
        }
        if token:
            params["page_token"] = token
        page = ok(http.get("/runs", params=params))
        assert page["total_size"] == 25
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert pages == 3 and seen == ids[::-1]
    first = ok(http.get("/runs", params={"experiment_id": exp, "page_size": 1}))["runs"][0]
    assert first["run_id"] == ids[0]  # KFP's default order: oldest first
    assert first["created_at"] == "2030-01-01T00:00:00Z"
    assert "run_details" not in first and first["pipeline_spec"] == {
        "pipelineInfo": {"name": "stored"}
    }

    by_name = ok(
        http.get(
            "/runs", params={"experiment_id": exp, "page_size": 3, "sort_by": "display_name desc"}
        )
    )
    assert [r["display_name"] for r in by_name["runs"]] == [
        "stored-024",
        "stored-023",
        "stored-022",
    ]
    # paging by a nullable key visits every run once
    seen, token = [], ""
    while True:
        params = {"experiment_id": exp, "page_size": 7, "sort_by": "finished_at"}
        page = ok(http.get("/runs", params={**params, **({"page_token": token} if token else {})}))
        seen += [r["run_id"] for r in page["runs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert sorted(seen) == sorted(ids)

    def count(*preds: dict[str, Any]) -> int:
        return ok(http.get("/runs", params={"experiment_id": exp, **predicates(*preds)}))[
            "total_size"
        ]

    assert count({"key": "state", "operation": "EQUALS", "string_value": "FAILED"}) == 8
    assert (
        count({"key": "state", "operation": 2, "stringValue": "FAILED"}) == 17
    )  # numbers, camelCase
    assert (
        count({"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "STORED-01"})
        == 10
    )
    assert (
        count(
            {"key": "state", "operation": "IN", "string_values": {"values": ["RUNNING", "FAILED"]}}
        )
        == 16
    )
    assert (
        count(
            {
                "key": "created_at",
                "operation": "GREATER_THAN_EQUALS",
                "timestamp_value": "2030-01-01T00:00:20Z",
            }
        )
        == 5
    )
    assert (
        count(
            {
                "key": "created_at",
                "operation": "LESS_THAN",
                "timestamp_value": "2030-01-01T00:00:05Z",
            },
            {"key": "state", "operation": "NOT_EQUALS", "string_value": "RUNNING"},
        )
        == 4
    )
    assert (
        count(
            {
                "key": "finished_at",
                "operation": "GREATER_THAN",
                "long_value": str(int((start + timedelta(seconds=23)).timestamp())),
            }
        )
        == 1
    )

    for bad, problem in (
        ("{not json", "not valid JSON"),
        (
            json.dumps(
                {"predicates": [{"key": "color", "operation": "EQUALS", "string_value": "x"}]}
            ),
            "'color'",
        ),
        (
            json.dumps(
                {"predicates": [{"key": "state", "operation": "LIKE", "string_value": "x"}]}
            ),
            "LIKE",
        ),
        (json.dumps({"predicates": [{"key": "state", "operation": "IN"}]}), "IN needs"),
        (
            json.dumps(
                {
                    "predicates": [
                        {"key": "created_at", "operation": "EQUALS", "timestamp_value": "yesterday"}
                    ]
                }
            ),
            "RFC 3339",
        ),
        (json.dumps({"predicates": [{"key": "state", "operation": "EQUALS"}]}), "needs one of"),
    ):
        assert problem in error(http.get("/runs", params={"filter": bad}), 400)
    assert "sortable keys" in error(http.get("/runs", params={"sort_by": "colour"}), 400)
    assert "FIELD asc|desc" in error(
        http.get("/runs", params={"sort_by": "created_at sideways"}), 400
    )
    assert "page_token" in error(http.get("/runs", params={"page_token": "garbage!"}), 400)


def test_archived_runs_filter(http: httpx.Client, server: ServerProcess) -> None:
    exp = experiment(http)
    ids = insert_runs(server.db_url, exp, 3, datetime(2031, 1, 1, tzinfo=UTC))
    ok(http.post(f"/runs/{ids[1]}:archive"))
    available = {"key": "storage_state", "operation": "NOT_EQUALS", "string_value": "ARCHIVED"}
    page = ok(http.get("/runs", params={"experiment_id": exp, **predicates(available)}))
    assert [r["run_id"] for r in page["runs"]] == [ids[0], ids[2]]
    ok(http.post(f"/experiments/{exp}:archive"))
    page = ok(http.get("/runs", params={"experiment_id": exp, **predicates(available)}))
    assert page["total_size"] == 0
    assert "archived" in error(
        http.post("/runs", json={"experiment_id": exp, "pipeline_spec": ir(inc_pipeline)}), 409
    )


# ---------------------------------------------------------------- errors


def test_errors_are_4xx_with_a_message(http: httpx.Client) -> None:
    assert "not found" in error(http.get("/runs/nope"), 404)
    assert error(http.get("/runs/nope"), 404) and http.get("/runs/nope").json()["code"] == 5
    error(http.post("/runs/nope:retry"), 404)
    error(http.post("/runs/nope:archive"), 404)
    error(http.delete("/runs/nope"), 404)
    error(http.get("/pipelines/names/nope"), 404)
    error(http.delete("/experiments/nope"), 404)
    error(http.post("/recurringruns/nope:enable"), 404)
    error(http.get("/pipelines/nope/versions"), 404)
    assert "experiment_id" in error(
        http.post("/runs", json={"experiment_id": "nope", "pipeline_spec": ir(inc_pipeline)}), 404
    )

    assert "pipeline_spec or pipeline_version_reference" in error(
        http.post("/runs", json={"display_name": "x"}), 400
    )
    assert "root" in error(
        http.post("/runs", json={"pipeline_spec": {"pipelineInfo": {"name": "x"}}}), 400
    )
    bad_param = {"pipeline_spec": ir(inc_pipeline), "runtime_config": {"parameters": {"nope": 1}}}
    assert "nope" in error(http.post("/runs", json=bad_param), 400)
    wrong_type = {
        "pipeline_spec": ir(inc_pipeline),
        "runtime_config": {"parameters": {"x": "many"}},
    }
    error(http.post("/runs", json=wrong_type), 400)
    error(http.post("/runs", json=[1, 2]), 400)
    error(http.post("/runs", content=b"{broken", headers={"content-type": "application/json"}), 400)
    assert "nope" in error(
        http.post("/runs", json={"pipeline_version_reference": {"pipeline_id": "nope"}}), 404
    )

    garbage = {"uploadfile": ("p.yaml", b"just: [unbalanced", "application/x-yaml")}
    error(http.post("/pipelines/upload", files=garbage, params={"name": unique("bad")}), 400)
    not_ir = {"uploadfile": ("p.yaml", b"hello: world\n", "application/x-yaml")}
    error(http.post("/pipelines/upload", files=not_ir, params={"name": unique("bad")}), 400)
    error(http.post("/pipelines/upload_version", files=not_ir), 400)

    name = unique("dup")
    ok(http.post("/experiments", json={"display_name": name}))
    error(http.post("/experiments", json={"display_name": name}), 409)


def test_pipelines_and_versions_by_json(http: httpx.Client) -> None:
    name = unique("json-pipeline")
    spec = ir(inc_pipeline)
    created = ok(
        http.post(
            "/pipelines/create",
            json={
                "pipeline": {"name": name, "display_name": "Shown", "description": "by JSON"},
                "pipeline_version": {"name": "v1", "pipeline_spec": spec},
            },
        )
    )
    pid = created["pipeline_id"]
    assert created["display_name"] == "Shown" and created["namespace"] == "default"
    assert created["created_at"].endswith("Z")
    assert ok(http.get(f"/pipelines/names/{name}"))["pipeline_id"] == pid
    error(http.post("/pipelines", json={"name": name}), 409)

    v2 = ok(
        http.post(
            f"/pipelines/{pid}/versions",
            json={
                "display_name": "v2",
                "pipeline_spec": {"pipeline_spec": spec, "platform_spec": {"platforms": {}}},
            },
        )
    )
    error(http.post(f"/pipelines/{pid}/versions", json={"name": "v2", "pipeline_spec": spec}), 409)
    versions = ok(http.get(f"/pipelines/{pid}/versions", params={"sort_by": "name"}))
    assert [v["name"] for v in versions["pipeline_versions"]] == ["v1", "v2"]
    assert (
        ok(http.get(f"/pipelines/{pid}/versions/{v2['pipeline_version_id']}"))["pipeline_spec"]
        == spec
    )

    # a run from the pipeline alone uses its newest version
    run = ok(
        http.post(
            "/runs",
            json={
                "pipeline_version_reference": {"pipeline_id": pid},
                "runtime_config": {"parameters": {"x": 41}},
            },
        )
    )
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pid,
        "pipeline_version_id": v2["pipeline_version_id"],
    }
    assert wait_run(http, run["run_id"])["state"] == "SUCCEEDED"

    empty = ok(http.post("/pipelines", json={"name": unique("empty")}))
    error(
        http.post(
            "/runs", json={"pipeline_version_reference": {"pipeline_id": empty["pipeline_id"]}}
        ),
        404,
    )
    ok(http.delete(f"/pipelines/{empty['pipeline_id']}"))

    error(http.delete(f"/pipelines/{pid}"), 409)
    ok(http.delete(f"/pipelines/{pid}", params={"cascade": "true"}))
    error(http.get(f"/pipelines/{pid}/versions/{v2['pipeline_version_id']}"), 404)


def test_upload_tarball_package(http: httpx.Client, tmp_path: Path) -> None:
    from kfp import compiler

    yaml_path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(inc_pipeline, str(yaml_path))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(yaml_path), arcname="pipeline.yaml")
    files = {"uploadfile": ("inc.tar.gz", buffer.getvalue(), "application/gzip")}
    name = unique("tarball")
    pipeline = ok(http.post("/pipelines/upload", files=files, params={"name": name}))
    versions = ok(http.get(f"/pipelines/{pipeline['pipeline_id']}/versions"))["pipeline_versions"]
    assert versions[0]["pipeline_spec"]["pipelineInfo"]["name"] == "api-inc"


# ---------------------------------------------------------------- runs


def test_retry_failed_run_does_not_repeat_succeeded_tasks(
    http: httpx.Client, tmp_path: Path
) -> None:
    log, marker = tmp_path / "log.txt", tmp_path / "marker"
    run = ok(
        http.post(
            "/runs",
            json={
                "display_name": "retry me",
                "description": "fails once",
                "service_account": "robot",
                "pipeline_spec": ir(retry_pipeline),
                "runtime_config": {"parameters": {"log": str(log), "marker": str(marker)}},
            },
        )
    )
    assert run["description"] == "fails once" and run["service_account"] == "robot"
    failed = wait_run(http, run["run_id"])
    assert failed["state"] == "FAILED"
    assert failed["error"]["message"]
    states = {t["display_name"]: t["state"] for t in failed["run_details"]["task_details"]}
    assert states == {"record": "SUCCEEDED", "flaky": "FAILED"}

    ok(http.post(f"/runs/{run['run_id']}:retry"))
    done = wait_run(http, run["run_id"])
    assert done["state"] == "SUCCEEDED", done.get("error")
    assert log.read_text().splitlines() == ["first"]  # the succeeded task was not run again
    assert "only FAILED or CANCELED" in error(http.post(f"/runs/{run['run_id']}:retry"), 409)


def test_read_artifact(http: httpx.Client) -> None:
    run = ok(
        http.post(
            "/runs",
            json={
                "pipeline_spec": ir(artifact_pipeline),
                "runtime_config": {"parameters": {"text": "payload!"}},
            },
        )
    )
    done = wait_run(http, run["run_id"])
    assert done["state"] == "SUCCEEDED"
    (task,) = done["run_details"]["task_details"]
    assert list(task["outputs"]) == ["data"] and task["outputs"]["data"]["artifact_ids"]
    path = f"/runs/{run['run_id']}/nodes/{task['task_id']}/artifacts/data:read"
    data = base64.b64decode(ok(http.get(path))["data"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == b"payload!"
    by_name = f"/runs/{run['run_id']}/nodes/write-dataset/artifacts/data:read"
    assert ok(http.get(by_name))["data"]
    assert "its output artifacts: data" in error(
        http.get(f"/runs/{run['run_id']}/nodes/{task['task_id']}/artifacts/nope:read"), 404
    )
    error(http.get(f"/runs/{run['run_id']}/nodes/nope/artifacts/data:read"), 404)


# ---------------------------------------------------------------- recurring runs


def test_recurring_run_validation(http: httpx.Client) -> None:
    spec = ir(inc_pipeline)

    def create(**fields: Any) -> httpx.Response:
        body = {"display_name": unique("rr"), "pipeline_spec": spec, "mode": "DISABLE", **fields}
        return http.post("/recurringruns", json=body)

    assert "6 (seconds" in error(create(trigger={"cron_schedule": {"cron": "* *"}}), 400)
    assert "not a valid cron" in error(
        create(trigger={"cron_schedule": {"cron": "99 * * * * *"}}), 400
    )
    assert "interval_second" in error(
        create(trigger={"periodic_schedule": {"interval_second": "0"}}), 400
    )
    assert "exactly one" in error(create(trigger={}), 400)
    assert "max_concurrency" in error(
        create(trigger={"periodic_schedule": {"interval_second": 5}}, max_concurrency="11"), 400
    )
    assert "nope" in error(
        create(
            trigger={"periodic_schedule": {"interval_second": 5}},
            runtime_config={"parameters": {"nope": 1}},
        ),
        400,
    )
    made = ok(
        create(
            trigger={
                "cron_schedule": {"cron": "0 0 9 ? * 2-6", "start_time": "2030-01-01T00:00:00Z"}
            }
        )
    )
    assert made["status"] == "DISABLED" and made["max_concurrency"] == "1"
    assert made["trigger"]["cron_schedule"] == {
        "cron": "0 0 9 ? * 2-6",
        "start_time": "2030-01-01T00:00:00Z",
    }
    listed = http.get("/recurringruns", params={"page_size": 100}).json()
    assert made["recurring_run_id"] in [r["recurring_run_id"] for r in listed["recurringRuns"]]
    ok(http.delete(f"/recurringruns/{made['recurring_run_id']}"))


def test_cron_recurring_run_fires(http: httpx.Client) -> None:
    exp = experiment(http)
    made = ok(
        http.post(
            "/recurringruns",
            json={
                "display_name": "every second",
                "experiment_id": exp,
                "no_catchup": True,
                "trigger": {"cron_schedule": {"cron": "* * * * * *"}},
                "max_concurrency": "1",
                "pipeline_spec": ir(inc_pipeline),
                "runtime_config": {"parameters": {"x": 7}},
            },
        )
    )
    deadline = time.monotonic() + 60
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not runs:
        runs = ok(http.get("/runs", params={"experiment_id": exp}))["runs"]
        time.sleep(0.2)
    assert runs and runs[0]["recurring_run_id"] == made["recurring_run_id"]
    scheduled, created = (
        datetime.fromisoformat(runs[0][k].replace("Z", "+00:00"))
        for k in ("scheduled_at", "created_at")
    )
    assert scheduled <= created
    ok(http.post(f"/recurringruns/{made['recurring_run_id']}:disable"))
    ok(http.post(f"/recurringruns/{made['recurring_run_id']}:enable"))
    assert ok(http.get(f"/recurringruns/{made['recurring_run_id']}"))["status"] == "ENABLED"
    ok(http.delete(f"/recurringruns/{made['recurring_run_id']}"))


def test_triggers() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    row = KfpRecurringRunRow(cron=None, interval_second=10, start_time=None, end_time=None)
    every10 = Trigger.of(row)
    assert every10.due(t0, t0 + timedelta(seconds=9), latest_only=False) is None
    assert every10.due(t0, t0 + timedelta(seconds=35), latest_only=False) == t0 + timedelta(
        seconds=10
    )
    assert every10.due(t0, t0 + timedelta(seconds=35), latest_only=True) == t0 + timedelta(
        seconds=30
    )
    bounded = Trigger.of(
        KfpRecurringRunRow(
            cron=None, interval_second=10, start_time=None, end_time=t0 + timedelta(seconds=15)
        )
    )
    assert (
        bounded.due(t0 + timedelta(seconds=10), t0 + timedelta(hours=1), latest_only=False) is None
    )
    starting = Trigger.of(
        KfpRecurringRunRow(
            cron=None, interval_second=10, start_time=t0 + timedelta(hours=1), end_time=None
        )
    )
    assert starting.base(None, t0) == t0 + timedelta(hours=1)

    six = Trigger.of(
        KfpRecurringRunRow(
            cron="0 0 9 ? * 2-6", interval_second=None, start_time=None, end_time=None
        )
    )
    monday = datetime(2030, 1, 7, tzinfo=UTC)  # day-of-week 0 is Sunday, as in KFP's Go cron
    assert six.after(monday) == monday + timedelta(days=1, hours=9)
    five = Trigger.of(
        KfpRecurringRunRow(
            cron="*/15 * * * *", interval_second=None, start_time=None, end_time=None
        )
    )
    assert five.due(t0, t0 + timedelta(minutes=50), latest_only=True) == t0 + timedelta(minutes=45)
    assert five.due(t0, t0 + timedelta(minutes=50), latest_only=False) == t0 + timedelta(minutes=15)
    every = Trigger.of(
        KfpRecurringRunRow(
            cron="@every 1m30s", interval_second=None, start_time=None, end_time=None
        )
    )
    assert every.after(t0) == t0 + timedelta(seconds=90)
    assert check_cron("@hourly") == "@hourly"
    with pytest.raises(InvalidSpec):
        check_cron("@every soon")
    with pytest.raises(InvalidSpec):
        check_trigger(
            {
                "periodic_schedule": {
                    "interval_second": 5,
                    "start_time": "2030-01-02T00:00:00Z",
                    "end_time": "2030-01-01T00:00:00Z",
                }
            }
        )
    with pytest.raises(InvalidSpec, match="'color'"):
        filter_clauses(
            '{"predicates":[{"key":"color","operation":"EQUALS","string_value":"x"}]}',
            {},
            resource="runs",
        )


class Recording:
    """A RunService that counts submissions and holds its runs PENDING until
    :meth:`release` (the scheduler's bookkeeping is what is tested, and a run that
    finished in a few milliseconds would free its concurrency slot mid-tick)."""

    def __init__(self, database: Database):
        from ketch.capabilities import backend
        from ketch.pipelines.service import RunService

        self.service = RunService(database, backend=backend())
        self.submitted: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self._held: list[tuple[Any, ...]] = []
        launch = self.service._launch
        self._launch = launch
        self.service._launch = lambda *a, **k: self._held.append((a, k))  # type: ignore[method-assign]

    def release(self) -> None:
        self.service._launch = self._launch  # type: ignore[method-assign]
        for args, kwargs in self._held:
            self._launch(*args, **kwargs)
        self._held.clear()

    def submit(self, spec: dict[str, Any], **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        run_id = self.service.submit(spec, **kwargs)
        self.ids.append(run_id)
        return run_id


def test_scheduler_catchup_and_restart_safety(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'sched.db'}")
    database.migrate([MIGRATIONS])
    t0 = datetime.now(UTC) - timedelta(seconds=35)

    def add(no_catchup: bool, max_concurrency: int = 10, **extra: Any) -> str:
        rid = str(uuid.uuid4())
        with database.session() as s:
            s.add(
                KfpRecurringRunRow(
                    id=rid,
                    display_name=rid[:8],
                    description="",
                    namespace="default",
                    experiment_id=None,
                    pipeline_spec=ir(inc_pipeline),
                    parameters={"x": 1},
                    service_account="",
                    max_concurrency=max_concurrency,
                    interval_second=10,
                    mode="ENABLE",
                    no_catchup=no_catchup,
                    created_at=t0,
                    updated_at=t0,
                    **extra,
                )
            )
        return rid

    runs = Recording(database)
    try:
        backfill, latest = add(False), add(True)
        limited = add(False, max_concurrency=1)
        scheduler = Scheduler(runs, database)
        scheduler.tick()
        fired: dict[str, int] = {}
        for call in runs.submitted:
            fired[call["recurring_run_id"]] = fired.get(call["recurring_run_id"], 0) + 1
        assert fired[backfill] == 3  # t0+10, t0+20, t0+30
        assert fired[latest] == 1  # only t0+30
        assert fired[limited] == 1  # the next waits for the first to finish

        # a fire committed but never turned into a run (the server stopped) is finished once
        stale = datetime.now(UTC) - timedelta(minutes=5)
        pending = add(True, last_scheduled_at=datetime.now(UTC), pending_since=stale)
        before = len(runs.submitted)
        scheduler.tick()
        scheduler.tick()
        made = [c for c in runs.submitted[before:] if c["recurring_run_id"] == pending]
        assert len(made) == 1
        with database.session(readonly=True) as s:
            row = s.get(KfpRecurringRunRow, pending)
            assert row is not None and row.pending_since is None
    finally:
        runs.release()
        for run_id in runs.ids:
            runs.service.wait(run_id, timeout=60)
        runs.service.stop()
        database.dispose()
