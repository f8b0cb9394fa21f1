"""The runnable examples, end to end through the `ketch` CLI."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.pipelines.helpers import REPO, cli_command, cli_env

EXAMPLES = REPO / "examples"


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KETCH_HOME", str(tmp_path / "ketch-home"))
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("KETCH_ARTIFACTS", raising=False)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli_command(), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=280,
            env=cli_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.mark.slow
def test_demo_pipeline_trains_and_evaluates(run_cli):
    proc = run_cli(
        "run", EXAMPLES / "demo_pipeline.py", "--param", "n_estimators=20", "--output", "json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    accuracy = result["outputs"]["Output"]
    assert 0.85 < accuracy <= 1.0
    assert set(result["tasks"]) == {"prepare-data", "train-model", "evaluate-model"}


@pytest.mark.slow
def test_demo_pipeline_metrics_through_python_api(tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_HOME", str(tmp_path / "ketch-home"))
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        import demo_pipeline
    finally:
        sys.path.remove(str(EXAMPLES))
    import ketch

    run = ketch.run(demo_pipeline.demo_pipeline, arguments={"n_estimators": 10, "seed": 1})
    assert run.state == "SUCCEEDED", run.error
    evaluation = run.tasks["evaluate-model"].outputs
    metrics = evaluation["metrics"][0]["metadata"]
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    classification = evaluation["classification"][0]["metadata"]
    rows = [r["row"] for r in classification["confusionMatrix"]["rows"]]
    test_rows = run.tasks["prepare-data"].outputs["test_data"][0]["metadata"]["rows"]
    assert sum(map(sum, rows)) == test_rows
    assert len(classification["confidenceMetrics"]) >= 2
    model = run.tasks["train-model"].outputs["model"][0]
    assert model["metadata"]["framework"] == "scikit-learn"


@pytest.mark.slow
def test_control_flow_example(run_cli):
    proc = run_cli(
        "run",
        EXAMPLES / "control_flow.py",
        "--param",
        "numbers=[3, 8, 15, 4]",
        "--param",
        "threshold=5",
        "--output",
        "json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["outputs"] == {"Output": "large total: 314"}
    shouted = [p for p, t in result["tasks"].items() if "shout" in p and t["state"] == "SUCCEEDED"]
    assert len(shouted) == 2  # 8 and 15


@pytest.mark.slow
def test_container_component_example(run_cli):
    proc = run_cli(
        "run",
        EXAMPLES / "container_component.py",
        "--param",
        'words=["a", "b", "c"]',
        "--output",
        "json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    assert result["outputs"]["Output"].endswith("counted 3 words")
