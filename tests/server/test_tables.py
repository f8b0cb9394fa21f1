"""``meta.k8s.io/v1`` Tables: the Accept negotiation, each kind's printer columns as
cells (Kubernetes' JSONPath semantics), ``includeObject``, paging and all-namespaces
lists, against real servers and the real kubectl."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.capabilities import create_app
from ketch.core.kinds import Column
from ketch.server.tables import (
    JsonPathError,
    cell,
    compile_path,
    find,
    human_duration,
    table_version,
)
from tests.server.fixtures import job, jobs_path
from tests.server.helpers import Server, ThreadServer, assert_status
from tests.server.kubectl import kubectl_for

#: what kubectl sends for ``get``
KUBECTL_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
TABLE = {"accept": KUBECTL_ACCEPT}
AGE = re.compile(r"^[0-9]+[smhdy]")


# -- JSONPath -------------------------------------------------------------------------------

OBJ: dict[str, Any] = {
    "metadata": {
        "name": "a",
        "annotations": {"pipelines.ketch.dev/display-name": "My run", "plain": "p"},
        "labels": {"x.y/z": "1"},
    },
    "spec": {"replicas": 3, "ratio": 0.5, "enabled": False, "empty": [], "nothing": None},
    "status": {
        "conditions": [
            {"type": "Created", "status": "True", "count": 1},
            {"type": "Running", "status": "False", "count": 5},
            {"type": "Ready", "status": "True", "count": 2},
        ],
        "traffic": [
            {"tag": "prev", "percent": 10, "revisionName": "r1", "latestRevision": False},
            {"percent": 90, "revisionName": "r2", "latestRevision": True},
            {"percent": 0, "revisionName": "r3", "latestRevision": "true"},
        ],
        "counts": {"a": 1, "b": 2},
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".metadata.name", ["a"]),
        ("{.metadata.name}", ["a"]),
        ("$.metadata.name", ["a"]),
        (".metadata.annotations.pipelines\\.ketch\\.dev/display-name", ["My run"]),
        (".metadata.annotations['pipelines.ketch.dev/display-name']", ["My run"]),
        (".metadata.labels.x\\.y/z", ["1"]),
        (".metadata.annotations.missing", []),
        (".metadata.nope.deeper", []),
        (".status.conditions[-1:].type", ["Ready"]),
        (".status.conditions[0].type", ["Created"]),
        (".status.conditions[-1].type", ["Ready"]),
        (".status.conditions[5].type", []),
        (".status.conditions[0:2].type", ["Created", "Running"]),
        (".status.conditions[::2].type", ["Created", "Ready"]),
        (".status.conditions[*].type", ["Created", "Running", "Ready"]),
        (".status.conditions.*.status", ["True", "False", "True"]),
        (".status.counts.*", [1, 2]),
        (".status.counts[*]", [1, 2]),
        (".status.conditions[?(@.type=='Ready')].status", ["True"]),
        ('.status.conditions[?(@.type == "Running")].status', ["False"]),
        (".status.conditions[?(@.type!='Ready')].type", ["Created", "Running"]),
        (".status.conditions[?(@.count>1)].type", ["Running", "Ready"]),
        (".status.conditions[?(@.count<=2)].type", ["Created", "Ready"]),
        (".status.conditions[?(@.type=='Nope')].status", []),
        (".status.traffic[?(@.latestRevision==true)].percent", [90]),  # not the string "true"
        (".status.traffic[?(@.latestRevision==false)].revisionName", ["r1"]),
        (".status.traffic[?(@.tag=='prev')].percent", [10]),
        (".status.traffic[?(@.tag)].revisionName", ["r1"]),
        (".status.traffic[?(@.percent==90.0)].revisionName", ["r2"]),
        (".spec.empty[-1:]", []),
        (".spec.replicas", [3]),
        (".spec.replicas[0]", []),  # not a list
        (".spec.nothing", [None]),
    ],
)
def test_jsonpath(path: str, expected: list[Any]) -> None:
    assert find(path, OBJ) == expected


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "empty"),
        ("metadata.name", "starts with '.' or '['"),
        ("..name", "recursive descent"),
        (".a[0,1]", "unions"),
        (".a[", "index, a slice"),
        (".a[1", "']' is expected"),
        (".a[?(@.b=='c']", "')' is expected"),
        (".a[?@.b]", "[?(@.field=='value')]"),
        (".a[?(@.b==)]", "a literal"),
        (".a[?(@.b=1)]", "a comparison"),
        (".a[?(@.b=='c)]", "no closing"),
        (".a[?(b=='c')]", "'@'"),
        (".a[::0]", "step cannot be 0"),
        (".a.", "a field name is expected"),
        (".a\\", "escapes nothing"),
        (".a{.b}", "not supported"),
        (".a]", "unexpected"),
    ],
)
def test_jsonpath_errors_say_where_and_why(path: str, fragment: str) -> None:
    with pytest.raises(JsonPathError) as caught:
        compile_path(path)
    assert fragment in str(caught.value) and "position" in str(caught.value)
    assert repr(path) in str(caught.value)


def test_every_kinds_columns_compile() -> None:
    from ketch.capabilities import CAPABILITIES
    from ketch.core.capability import kinds_of

    for kind in kinds_of(CAPABILITIES):
        for column in kind.columns:
            compile_path(column.json_path)  # raises on a column outside the grammar


NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


def test_cells_follow_the_column_type() -> None:
    assert cell(Column("X", ".a"), []) is None  # kubectl prints <none>
    assert cell(Column("X", ".a"), [None]) is None
    assert cell(Column("X", ".a"), ["Ready"]) == "Ready"
    assert cell(Column("X", ".a"), [True]) == "true"
    assert cell(Column("X", ".a"), [3.0]) == "3"
    assert cell(Column("X", ".a"), [{"b": 1}]) == '{"b":1}'
    assert cell(Column("X", ".a[*]"), ["a", "b", 3]) == "a,b,3"  # joined as kubectl does
    assert cell(Column("X", ".a", "integer"), [90]) == 90
    assert cell(Column("X", ".a", "integer"), [90.0]) == 90
    assert cell(Column("X", ".a", "integer"), ["90"]) is None
    assert cell(Column("X", ".a", "integer"), [True]) is None
    assert cell(Column("X", ".a", "number"), [0.5]) == 0.5
    assert cell(Column("X", ".a", "boolean"), [False]) is False
    assert cell(Column("X", ".a", "boolean"), ["false"]) is None
    date = Column("Age", ".metadata.creationTimestamp", "date")
    assert cell(date, ["2026-01-10T11:55:00Z"], NOW) == "5m"
    assert cell(date, ["2026-01-07T08:00:00+00:00"], NOW) == "3d4h"
    assert cell(date, ["2026-01-07T08:00:00.5Z"], NOW) == "3d3h"
    assert cell(date, ["yesterday"], NOW) == "<invalid>"
    assert cell(date, [17], NOW) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (15 * 60 + 30, "15m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 10 * 60, "5h10m"),
        (20 * 3600 + 59 * 60, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (5 * 86400, "5d"),
        (40 * 86400 + 3600, "40d"),
        (2 * 365 * 86400 + 30 * 86400, "2y30d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400 + 100 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (KUBECTL_ACCEPT, "v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "v1beta1"),
        ("application/json;as=Table;g=meta.k8s.io;v=v1", "v1"),
        ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", None),
        ("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5, application/json", None),
        ("application/json;q=0.1, application/json;as=Table;v=v1;g=meta.k8s.io", "v1"),
        # a q that is no number leaves its range out, as discovery and OpenAPI read it
        ("application/json;as=Table;v=v1;g=meta.k8s.io;q=high, application/json", None),
        (
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,"
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            "v1",
        ),
        ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
        ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io", None),
        ("*/*", None),
        ("", None),
        (None, None),
    ],
)
def test_accept_negotiation(accept: str | None, version: str | None) -> None:
    assert table_version(accept) == version


# -- against a real ketch up ------------------------------------------------------------------


def rows_by_name(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["cells"][0]: row for row in table["rows"]}


def test_pytorchjob_list_and_read_as_tables(client: httpx.Client, ns: str) -> None:
    for name in ("one", "two"):
        assert client.post(jobs_path(ns), json=job(name, labels={"app": name})).status_code == 201
    response = client.get(jobs_path(ns), headers=TABLE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = response.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert "resourceVersion" in table["metadata"]
    assert table["columnDefinitions"][0] == {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": table["columnDefinitions"][0]["description"],
        "priority": 0,
    }
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("State", "string"),
        ("Age", "date"),
    ]
    assert all(
        set(c) == {"name", "type", "format", "description", "priority"}
        for c in table["columnDefinitions"]
    )
    rows = rows_by_name(table)
    assert sorted(rows) == ["one", "two"]
    for name, row in rows.items():
        assert row["object"]["kind"] == "PartialObjectMetadata"
        assert row["object"]["apiVersion"] == "meta.k8s.io/v1"
        meta = row["object"]["metadata"]
        assert meta["name"] == name and meta["namespace"] == ns
        assert meta["labels"] == {"app": name}
        assert AGE.match(row["cells"][2]), row["cells"]

    # the State cell is the last condition's type of the object the row stands for
    full = client.get(jobs_path(ns), headers=TABLE, params={"includeObject": "Object"}).json()
    for row in full["rows"]:
        obj = row["object"]
        assert obj["kind"] == "PyTorchJob" and "spec" in obj
        conditions = (obj.get("status") or {}).get("conditions") or []
        assert row["cells"][1] == (conditions[-1]["type"] if conditions else None)

    bare = client.get(jobs_path(ns), headers=TABLE, params={"includeObject": "None"}).json()
    assert all("object" not in row for row in bare["rows"]) and len(bare["rows"]) == 2

    one = client.get(jobs_path(ns, "one"), headers=TABLE)
    assert one.status_code == 200
    single = one.json()
    assert single["kind"] == "Table" and [r["cells"][0] for r in single["rows"]] == ["one"]
    plain = client.get(jobs_path(ns, "one")).json()
    assert single["metadata"]["resourceVersion"] == plain["metadata"]["resourceVersion"]
    status = client.get(jobs_path(ns, "one") + "/status", headers=TABLE).json()
    assert status["kind"] == "Table"

    assert client.get(jobs_path(ns)).json()["kind"] == "PyTorchJobList"
    first_json = {"accept": "application/json, " + KUBECTL_ACCEPT}
    assert client.get(jobs_path(ns), headers=first_json).json()["kind"] == "PyTorchJobList"
    beta = client.get(
        jobs_path(ns), headers={"accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"}
    ).json()
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"

    refused = client.get(jobs_path(ns), headers=TABLE, params={"includeObject": "Everything"})
    body = assert_status(refused, 400, "BadRequest", "includeObject", "Metadata")
    assert body.startswith("includeObject:")
    assert refused.json()["details"]["causes"][0]["field"] == "includeObject"


def test_tables_page_and_list_every_namespace(client: httpx.Client) -> None:
    spaces = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for space in spaces:
        for name in ("p", "q"):
            assert client.post(jobs_path(space), json=job(name)).status_code == 201
    page = client.get(jobs_path(spaces[0]), headers=TABLE, params={"limit": 1}).json()
    assert len(page["rows"]) == 1 and page["metadata"]["continue"]
    rest = client.get(
        jobs_path(spaces[0]),
        headers=TABLE,
        params={"limit": 1, "continue": page["metadata"]["continue"]},
    ).json()
    assert [r["cells"][0] for r in page["rows"] + rest["rows"]] == ["p", "q"]
    assert "continue" not in rest["metadata"]

    # kubectl -A adds the NAMESPACE column from each row's object metadata
    every = client.get("/apis/kubeflow.org/v1/pytorchjobs", headers=TABLE).json()
    mine = sorted(
        (row["object"]["metadata"]["namespace"], row["cells"][0])
        for row in every["rows"]
        if row["object"]["metadata"]["namespace"] in spaces
    )
    assert mine == sorted((space, name) for space in spaces for name in ("p", "q"))


def test_pipeline_runs_as_tables(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    from tests.pipelines.submitted import hello_pipeline_ir

    manifest = {
        "apiVersion": "pipelines.ketch.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "hello"},
        "spec": {"pipelineSpec": hello_pipeline_ir(tmp_path)},
    }
    created = client.post(
        f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns", json=manifest
    )
    assert created.status_code == 201, created.text
    table = client.get(
        f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns",
        headers=TABLE,
        params={"includeObject": "Object"},
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Display Name",
        "State",
        "Age",
    ]
    (row,) = table["rows"]
    run = row["object"]
    assert row["cells"][0] == run["metadata"]["name"]
    assert row["cells"][1] == run["metadata"]["annotations"]["pipelines.ketch.dev/display-name"]
    assert row["cells"][2] == run["status"]["state"]
    assert AGE.match(row["cells"][3])


def test_kubectl_get_prints_the_printer_columns(server: Server, tmp_path: Path) -> None:
    space = f"t-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        for name in ("alpha", "beta"):
            assert http.post(jobs_path(space), json=job(name)).status_code == 201
    kubectl = kubectl_for(server.url, tmp_path, namespace=space)
    listed = kubectl.run("get", "pytorchjobs").stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATE", "AGE"], listed
    assert [line.split()[0] for line in listed[1:]] == ["alpha", "beta"]
    for line in listed[1:]:
        assert AGE.match(line.split()[-1]), line
    wide = kubectl.run("get", "pytorchjob", "alpha", "--show-labels").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATE", "AGE", "LABELS"], wide
    everywhere = kubectl.run("get", "pytorchjobs", "-A").stdout.splitlines()
    assert everywhere[0].split() == ["NAMESPACE", "NAME", "STATE", "AGE"], everywhere
    assert sum(line.split()[0] == space for line in everywhere[1:]) == 2


# -- Experiment and InferenceService columns, on a server whose controllers do not run -------


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real server with no controllers, so that the statuses written stay as they are."""
    home = tmp_path_factory.mktemp("quiet")
    app = create_app(database_url=f"sqlite:///{home / 'k.db'}", background=False)
    with ThreadServer(app) as running, httpx.Client(base_url=running.url) as http:
        yield http


def _create_with_status(
    http: httpx.Client, base: str, manifest: dict[str, Any], status: dict[str, Any]
) -> None:
    created = http.post(base, json=manifest)
    assert created.status_code == 201, created.text
    name = manifest["metadata"]["name"]
    written = http.put(f"{base}/{name}/status", json={"status": status})
    assert written.status_code == 200, written.text


def test_experiment_columns(quiet: httpx.Client) -> None:
    from tests.tuning.conftest import experiment

    base = "/apis/kubeflow.org/v1beta1/namespaces/tables/experiments"
    conditions = [
        {"type": "Created", "status": "True", "reason": "ExperimentCreated"},
        {"type": "Running", "status": "True", "reason": "ExperimentRunning"},
    ]
    _create_with_status(quiet, base, experiment("tuned"), {"conditions": conditions})
    _create_with_status(quiet, base, experiment("fresh"), {})
    table = quiet.get(base, headers=TABLE).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Status", "Age"]
    rows = rows_by_name(table)
    assert rows["tuned"]["cells"][1:3] == ["Running", "True"]
    assert rows["fresh"]["cells"][1:3] == [None, None]


def test_inference_service_columns(quiet: httpx.Client) -> None:
    base = "/apis/serving.kserve.io/v1beta1/namespaces/tables/inferenceservices"

    def isvc(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": {"sklearn": {"storageUri": "file:///models/iris"}}},
        }

    status = {
        "url": "http://iris.tables.127.0.0.1.sslip.io",
        "conditions": [
            {"type": "PredictorReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "components": {
            "predictor": {
                "traffic": [
                    {"tag": "prev", "percent": 20, "revisionName": "iris-1"},
                    {"latestRevision": True, "percent": 80, "revisionName": "iris-2"},
                ]
            }
        },
    }
    _create_with_status(quiet, base, isvc("iris"), status)
    _create_with_status(quiet, base, isvc("pending"), {})
    table = quiet.get(base, headers=TABLE).json()
    definitions = {c["name"]: c for c in table["columnDefinitions"]}
    assert list(definitions) == [
        "Name",
        "URL",
        "Ready",
        "Prev",
        "Latest",
        "PrevRolledoutRevision",
        "LatestReadyRevision",
        "Age",
    ]
    assert definitions["Prev"]["type"] == "integer" and definitions["Prev"]["priority"] == 0
    assert definitions["LatestReadyRevision"]["priority"] == 1  # shown with -o wide only
    rows = rows_by_name(table)
    assert rows["iris"]["cells"][1:7] == [
        "http://iris.tables.127.0.0.1.sslip.io",
        "True",
        20,
        80,
        "iris-1",
        "iris-2",
    ]
    assert rows["pending"]["cells"][1:7] == [None] * 6
    assert AGE.match(rows["iris"]["cells"][7])
    one = quiet.get(f"{base}/iris", headers=TABLE).json()
    assert one["rows"][0]["cells"] == rows["iris"]["cells"]


def test_age_is_relative_to_now() -> None:
    stamp = (datetime.now(UTC) - timedelta(minutes=5, seconds=3)).isoformat()
    assert re.fullmatch(r"5m[3-9]s", cell(Column("Age", ".t", "date"), [stamp]))
