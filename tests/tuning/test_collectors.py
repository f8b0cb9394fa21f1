"""Katib's metrics collectors on real files, real event files and a real push endpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ketch.core import config
from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.tuning.api import push_url
from ketch.tuning.collector_spec import DEFAULT_FILE_PATH, KIND_FIELD
from ketch.tuning.collectors import make_collector
from ketch.tuning.metrics import report_metrics
from ketch.tuning.observations import Observation, objective_value, summarize
from ketch.tuning.trialfiles import local_path, push_file, trial_dir
from tests.server.helpers import REPO, ThreadServer, assert_error, free_port


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def pairs(observations: list[Observation]) -> list[tuple[str, float, int | None]]:
    return [(obs.name, obs.value, obs.step) for obs in observations]


# -- StdOut --------------------------------------------------------------------------


def test_stdout_default_format(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    append(
        log,
        "starting training, lr=0.1\n"
        "epoch 1: accuracy=0.71 loss=0.9\n"
        "Validation-accuracy=0.81\n"
        "epoch 2: accuracy = 0.75 loss=3.0e-02 precision=.4\n"
        "loss=-1.5E+2 accuracy=1\n"
        "a line without metrics\n",
    )
    names = ["accuracy", "loss", "Validation-accuracy", "precision"]
    collector = make_collector(None, names, log_path=log, trial_dir=tmp_path / "trial")
    assert pairs(collector.poll()) == [
        ("accuracy", 0.71, 0),
        ("loss", 0.9, 0),
        ("Validation-accuracy", 0.81, 0),
        ("accuracy", 0.75, 1),
        ("loss", 0.03, 1),
        ("precision", 0.4, 0),
        ("loss", -150.0, 2),
        ("accuracy", 1.0, 2),
    ]
    assert collector.close() == []
    assert (tmp_path / "trial").is_dir()


def test_stdout_explicit_steps_and_line_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    append(
        log,
        "epoch=5 accuracy=0.5\n"
        "step=12 epoch=6 accuracy=0.6\n"
        "accuracy=0.7\n"
        "2024-05-01T10:00:00Z accuracy=0.8 loss=0.1\n",
    )
    spec = {"collector": {"kind": "StdOut"}}
    observations = make_collector(spec, ["accuracy"], log_path=log, trial_dir=tmp_path).poll()
    assert pairs(observations) == [
        ("accuracy", 0.5, 5),
        ("accuracy", 0.6, 12),
        ("accuracy", 0.7, 2),
        ("accuracy", 0.8, 3),
    ]
    assert [obs.timestamp for obs in observations[:3]] == [None, None, None]
    assert observations[3].timestamp == 1714557600.0


def test_stdout_custom_filter(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    append(log, "accuracy=0.9\n{metricName: accuracy, metricValue: 0.55}\nloss: 2\n")
    spec = {
        "collector": {"kind": "StdOut"},
        "source": {
            "filter": {
                "metricsFormat": [r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"]
            }
        },
    }
    collector = make_collector(spec, ["accuracy", "loss"], log_path=log, trial_dir=tmp_path)
    assert pairs(collector.poll()) == [("accuracy", 0.55, 0)]


@pytest.mark.parametrize(
    ("formats", "fragment"),
    [
        ([r"(\w+)=\d+"], "needs two groups"),
        ([r"(\w+=(\d+"], "not a valid regular expression"),
        ("(a)(b)", "must be a list"),
    ],
)
def test_bad_filters(tmp_path: Path, formats: Any, fragment: str) -> None:
    spec = {"source": {"filter": {"metricsFormat": formats}}}
    with pytest.raises(InvalidSpec, match="metricsFormat") as caught:
        make_collector(spec, ["loss"], log_path=tmp_path / "log", trial_dir=tmp_path)
    assert fragment in str(caught.value)


def test_incremental_polling_with_a_partial_last_line(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    collector = make_collector(None, ["loss"], log_path=log, trial_dir=tmp_path / "t")
    assert collector.poll() == []  # the process has not written its log yet
    append(log, "loss=0.5\nloss=0.4")  # the second line is still being written
    assert pairs(collector.poll()) == [("loss", 0.5, 0)]
    assert collector.poll() == []
    append(log, "2\n")
    assert pairs(collector.poll()) == [("loss", 0.42, 1)]
    append(log, "progress 10%\rloss=0.3\rprogress 20%\rloss=0.2 ")
    assert pairs(collector.poll()) == [("loss", 0.3, 2)]
    assert pairs(collector.close()) == [("loss", 0.2, 3)]
    assert collector.close() == []


def test_a_replaced_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    append(log, "loss=0.5\nloss=0.4\n")
    collector = make_collector(None, ["loss"], log_path=log, trial_dir=tmp_path / "t")
    assert len(collector.poll()) == 2
    log.write_text("loss=0.1\n")  # truncated and written again
    assert pairs(collector.poll()) == [("loss", 0.1, 2)]
    fresh = tmp_path / "fresh.log"
    fresh.write_text("loss=0.9\nloss=0.8\nloss=0.7\n")
    fresh.replace(log)  # replaced by a longer file
    assert [obs.value for obs in collector.poll()] == [0.9, 0.8, 0.7]


# -- File --------------------------------------------------------------------------------


def test_local_path_keeps_the_shape_under_the_trial_dir(tmp_path: Path) -> None:
    assert local_path("/var/log/katib/metrics.log", tmp_path) == (
        tmp_path / "fs" / "var" / "log" / "katib" / "metrics.log"
    )
    assert local_path("/var/log/katib/tfevent/", tmp_path) == tmp_path / "fs/var/log/katib/tfevent"
    with pytest.raises(InvalidSpec, match="fileSystemPath.path"):
        local_path("/var/../../etc/passwd", tmp_path)


def test_file_text(tmp_path: Path) -> None:
    spec = {
        "collector": {"kind": "File"},
        "source": {
            "fileSystemPath": {"path": "/katib/mnist.log", "kind": "File", "format": "TEXT"}
        },
    }
    collector = make_collector(spec, ["accuracy", "loss"], log_path=None, trial_dir=tmp_path)
    path = local_path("/katib/mnist.log", tmp_path)
    assert path.parent.is_dir()  # ready for the trial to write
    append(path, "2024-05-01T10:00:01.5+00:00 epoch=1 accuracy=0.5 loss=1.2\nnothing here\n")
    observations = collector.poll()
    assert pairs(observations) == [("accuracy", 0.5, 1), ("loss", 1.2, 1)]
    assert observations[0].timestamp == 1714557601.5


def test_file_defaults_to_katibs_path_and_text(tmp_path: Path) -> None:
    collector = make_collector(
        {"collector": {"kind": "File"}}, ["loss"], log_path=None, trial_dir=tmp_path
    )
    append(local_path(DEFAULT_FILE_PATH, tmp_path), "loss=0.25\n")
    assert pairs(collector.poll()) == [("loss", 0.25, 0)]


def test_file_json(tmp_path: Path) -> None:
    spec = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.json", "format": "JSON"}},
    }
    collector = make_collector(spec, ["acc", "loss"], log_path=None, trial_dir=tmp_path)
    path = local_path("/var/log/katib/metrics.json", tmp_path)
    lines = [
        {"epoch": 0, "acc": "0.5", "loss": 1.5, "timestamp": "2021-12-02T14:27:51Z"},
        {"epoch": 1, "acc": 0.6, "other": 3, "timestamp": 1638455272.25},
        {"acc": 0.7, "loss": "not a number"},
    ]
    append(path, "".join(json.dumps(line) + "\n" for line in lines) + "not json\n[1, 2]\n")
    append(path, '{"step": 9, "acc": 0.8')
    observations = collector.poll()
    assert pairs(observations) == [
        ("acc", 0.5, 0),
        ("loss", 1.5, 0),
        ("acc", 0.6, 1),
        ("acc", 0.7, 2),
    ]
    assert [obs.timestamp for obs in observations] == [
        1638455271.0,
        1638455271.0,
        1638455272.25,
        None,
    ]
    append(path, "}\n")
    assert pairs(collector.close()) == [("acc", 0.8, 9)]


def test_json_format_takes_no_filter(tmp_path: Path) -> None:
    spec = {
        "collector": {"kind": "File"},
        "source": {
            "fileSystemPath": {"path": "/m.json", "format": "JSON"},
            "filter": {"metricsFormat": [r"(\w+)=(\d+)"]},
        },
    }
    with pytest.raises(InvalidSpec, match="source.filter"):
        make_collector(spec, ["loss"], log_path=None, trial_dir=tmp_path)


@pytest.mark.parametrize(
    ("file_system_path", "fragment"),
    [
        ({"path": "relative/metrics.log"}, "fileSystemPath.path"),
        ({"path": "/m.log", "format": "YAML"}, "fileSystemPath.format"),
        ({"path": "/m.log", "kind": "Directory"}, "fileSystemPath.kind"),
    ],
)
def test_bad_file_sources(tmp_path: Path, file_system_path: dict[str, str], fragment: str) -> None:
    spec = {"collector": {"kind": "File"}, "source": {"fileSystemPath": file_system_path}}
    with pytest.raises(InvalidSpec, match=fragment):
        make_collector(spec, ["loss"], log_path=None, trial_dir=tmp_path)


# -- TensorFlowEvent ---------------------------------------------------------------------


def test_tensorflow_event_files(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    spec = {
        "collector": {"kind": "TensorFlowEvent"},
        "source": {"fileSystemPath": {"path": "/var/log/katib/tfevent/", "kind": "Directory"}},
    }
    names = ["accuracy", "Loss/train", "test/accuracy"]
    collector = make_collector(spec, names, log_path=None, trial_dir=tmp_path)
    directory = local_path("/var/log/katib/tfevent/", tmp_path)
    assert directory.is_dir()
    assert collector.poll() == []
    train = SummaryWriter(log_dir=str(directory))
    test = SummaryWriter(log_dir=str(directory / "test"))
    try:
        for step, (acc, loss) in enumerate([(0.5, 1.25), (0.625, 0.75)]):
            train.add_scalar("accuracy", acc, step)
            train.add_scalar("Loss/train", loss, step)
            train.add_scalar("ignored", 1.0, step)
        train.flush()
        first = collector.poll()
        assert pairs(first) == [
            ("accuracy", 0.5, 0),
            ("Loss/train", 1.25, 0),
            ("accuracy", 0.625, 1),
            ("Loss/train", 0.75, 1),
        ]
        assert all(obs.timestamp is not None and obs.timestamp > 0 for obs in first)
        assert collector.poll() == []
        train.add_scalar("accuracy", 0.71, 7)
        train.flush()
        test.add_scalar("accuracy", 0.66, 7)
        test.flush()
        # a name without a folder matches its tag in every folder, as in Katib
        assert sorted(pairs(collector.poll())) == [
            ("accuracy", 0.66, 7),
            ("accuracy", 0.71, 7),
            ("test/accuracy", 0.66, 7),
        ]
    finally:
        train.close()
        test.close()
    assert collector.close() == []


def test_tensorflow_event_needs_tensorboard(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.modules["tensorboard"] = None  # as if tensorboard were not installed
        from ketch.core.errors import InvalidSpec
        from ketch.tuning.collectors import make_collector
        try:
            make_collector({{"collector": {{"kind": "TensorFlowEvent"}}}}, ["loss"],
                           log_path=None, trial_dir=Path({str(tmp_path)!r}))
        except InvalidSpec as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert KIND_FIELD in result.stdout and "tensorboard" in result.stdout, result.stdout


# -- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["PrometheusMetric", "Custom", "Bogus"])
def test_unsupported_kinds(tmp_path: Path, kind: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        make_collector(
            {"collector": {"kind": kind}}, ["loss"], log_path=tmp_path / "l", trial_dir=tmp_path
        )
    assert caught.value.field == KIND_FIELD
    assert KIND_FIELD in str(caught.value) and kind in str(caught.value)


def test_none_collects_nothing(tmp_path: Path) -> None:
    log = tmp_path / "trial.log"
    append(log, "loss=0.5\n")
    collector = make_collector(
        {"collector": {"kind": "None"}}, ["loss"], log_path=log, trial_dir=tmp_path
    )
    assert collector.poll() == [] and collector.close() == []


# -- Push -----------------------------------------------------------------------------------


def test_report_metrics_to_the_trial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "trial"
    collector = make_collector(
        {"collector": {"kind": "Push"}}, ["loss", "acc"], log_path=None, trial_dir=folder
    )
    monkeypatch.setenv("KATIB_TRIAL_NAME", "trial-1")
    monkeypatch.setenv("KETCH_TRIAL_METRICS_FILE", str(push_file(folder)))
    monkeypatch.delenv("KETCH_TUNING_PUSH_URL", raising=False)
    report_metrics({"loss": 0.5, "acc": 1, "other": 2.0})
    report_metrics({"loss": 0.25}, step=10)
    report_metrics({})
    observations = collector.poll()
    assert pairs(observations) == [("loss", 0.5, 0), ("acc", 1.0, 0), ("loss", 0.25, 10)]
    assert all(obs.timestamp is not None for obs in observations)
    record = json.loads(push_file(folder).read_text().splitlines()[0])
    assert record["trial"] == "trial-1" and record["step"] is None


def test_report_metrics_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KETCH_TUNING_PUSH_URL", raising=False)
    monkeypatch.delenv("KETCH_TRIAL_METRICS_FILE", raising=False)
    monkeypatch.delenv("KATIB_TRIAL_NAME", raising=False)
    with pytest.raises(ValueError, match="KATIB_TRIAL_NAME"):
        report_metrics({"loss": 0.5})
    monkeypatch.setenv("KATIB_TRIAL_NAME", "trial-1")
    for bad in ("high", None, True, [1.0]):
        with pytest.raises(ValueError, match="'accuracy'"):
            report_metrics({"loss": 0.5, "accuracy": bad})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="step"):
        report_metrics({"loss": 0.5}, step=1.5)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="KETCH_TRIAL_METRICS_FILE"):
        report_metrics({"loss": 0.5})
    url = push_url(f"http://127.0.0.1:{free_port()}", "default", "trial-1")
    monkeypatch.setenv("KETCH_TUNING_PUSH_URL", url)
    with pytest.raises(RuntimeError, match="cannot push the metrics of trial trial-1"):
        report_metrics({"loss": 0.5})


def test_concurrent_reporters_never_interleave(tmp_path: Path) -> None:
    target = tmp_path / "pushed.jsonl"
    script = textwrap.dedent(
        """
        import sys
        from ketch.tuning.metrics import report_metrics
        worker = int(sys.argv[1])
        padding = {f"metric_{i:03d}": float(i) for i in range(200)}  # lines of several KiB
        for step in range(60):
            report_metrics({"worker": worker, **padding}, step=step)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "KATIB_TRIAL_NAME": "trial-1",
        "KETCH_TRIAL_METRICS_FILE": str(target),
    }
    env.pop("KETCH_TUNING_PUSH_URL", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(worker)], env=env, stdout=subprocess.PIPE
        )
        for worker in range(4)
    ]
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=120)
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert [process.returncode for process in processes] == [0] * 4
    assert outputs == [b""] * 4  # report_metrics prints nothing
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == 4 * 60
    for worker in range(4):
        steps = [r["step"] for r in records if r["metrics"]["worker"] == worker]
        assert steps == list(range(60))


@pytest.fixture
def push_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadServer]:
    """The push endpoint with Ketch's error handlers, on uvicorn in this process."""
    from fastapi import FastAPI

    from ketch.server import errors
    from ketch.tuning import api

    monkeypatch.setenv("KETCH_HOME", str(tmp_path / "home"))
    app = FastAPI()
    errors.install(app)
    app.include_router(api.router)
    with Database(config.database_url()) as database:
        app.state.api = SimpleNamespace(store=ResourceStore(database))
        with ThreadServer(app) as running:
            yield running


def test_push_endpoint(push_server: ThreadServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server = push_server
    ns, trial = f"t-{uuid.uuid4().hex[:8]}", f"trial-{uuid.uuid4().hex[:6]}"
    store = ResourceStore(Database(config.database_url()), migrate=False)
    stored = store.create(  # the endpoint takes the metrics of a stored trial
        Resource.from_manifest(
            {
                "apiVersion": "kubeflow.org/v1beta1",
                "kind": "Trial",
                "metadata": {"name": trial, "namespace": ns},
            }
        )
    )
    folder = trial_dir(ns, trial, stored.metadata.uid)
    collector = make_collector(
        {"collector": {"kind": "Push"}}, ["loss"], log_path=None, trial_dir=folder
    )
    url = push_url(server.url, ns, trial)
    monkeypatch.setenv("KATIB_TRIAL_NAME", trial)
    monkeypatch.setenv("KETCH_TUNING_PUSH_URL", url)
    monkeypatch.delenv("KETCH_TRIAL_METRICS_FILE", raising=False)
    report_metrics({"loss": 0.5})
    report_metrics({"loss": float("nan"), "acc": 0.9}, step=4)
    observations = collector.poll()
    assert [(obs.name, obs.step) for obs in observations] == [("loss", 0), ("loss", 4)]
    assert observations[0].value == 0.5 and math.isnan(observations[1].value)

    with httpx.Client(timeout=30) as http:
        response = http.post(url, json={"metrics": {"loss": 0.125}, "step": 5})
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 1}
        assert pairs(collector.poll()) == [("loss", 0.125, 5)]
        assert_error(
            http.post(url, json={"metrics": {"loss": "low"}}), 400, "'loss'", "not a number"
        )
        assert_error(http.post(url, json={"metrics": {"loss": 1}, "step": -1}), 400, "step")
        assert_error(http.post(url, json={"metric": {"loss": 1}}), 400, "metric")
        assert_error(http.post(url, json=[1, 2]), 400, "object")
        assert_error(http.post(url, content=b"{not json"), 400, "malformed JSON")
        huge = b'{"metrics": {"loss": ' + b"1" * 5000 + b"}}"
        assert_error(http.post(url, content=huge), 400, "malformed JSON")
        deep = b'{"metrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert_error(http.post(url, content=deep), 400, "body")
        assert_error(http.post(url, json={"metrics": {"loss": 10**400}}), 400, "'loss'")
        unknown = push_url(server.url, ns, "no-such-trial")
        assert_error(http.post(unknown, json={"metrics": {"loss": 1}}), 404, "no-such-trial")
        bad_name = push_url(server.url, ns, "Bad_Name")
        assert_error(http.post(bad_name, json={"metrics": {"loss": 1}}), 400, "name")
    assert collector.close() == []
    store.database.dispose()


# -- summaries ----------------------------------------------------------------------------


def test_summarize_min_max_latest() -> None:
    observations = [
        Observation("error", 0.03, 100.0),
        Observation("error", 0.01, 101.0),
        Observation("error", 0.07, 102.0),
        Observation("error", 0.05, 102.0),  # same time, reported later: the latest
        Observation("error", 0.1, 50.0),  # older
        Observation("accuracy", 0.7),
        Observation("accuracy", float("nan")),
        Observation("accuracy", 3.0),
        Observation("accuracy", 1e-05),
        Observation("ignored", 1.0),
    ]
    strategies = {"error": "min", "accuracy": "latest", "recall": "max"}
    metrics = summarize(observations, strategies)
    assert metrics == [
        {"name": "error", "min": "0.01", "max": "0.1", "latest": "0.05"},
        {"name": "accuracy", "min": "1e-05", "max": "3", "latest": "1e-05"},
        {"name": "recall", "min": "unavailable", "max": "unavailable", "latest": "unavailable"},
    ]
    assert objective_value(metrics, "error", "min") == 0.01
    assert objective_value(metrics, "error", "max") == 0.1
    assert objective_value(metrics, "accuracy", "latest") == 1e-05
    assert objective_value(metrics, "recall", "max") is None
    assert objective_value(metrics, "missing", "max") is None
    nan_latest = summarize(
        [Observation("loss", 1.0), Observation("loss", float("nan"))], {"loss": "latest"}
    )
    assert nan_latest[0]["latest"] == "nan" and nan_latest[0]["min"] == "1"
    assert objective_value(nan_latest, "loss", "latest") is None
    with pytest.raises(InvalidSpec):
        objective_value(metrics, "error", "median")
