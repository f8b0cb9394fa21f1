"""``ketch runs`` and the verbs on pipeline runs, against a server running real pipelines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.cli.test_verbs import Ketch, bad, ketch, ok  # noqa: F401
from tests.pipelines.submitted import hello_pipeline_ir


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return hello_pipeline_ir(tmp_path_factory.mktemp("ir"))


@pytest.fixture(scope="module")
def slow_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kfp import compiler

    from tests.pipelines.submitted import slow

    path = tmp_path_factory.mktemp("ir") / "slow.yaml"
    compiler.Compiler().compile(slow, str(path))
    return dict(yaml.safe_load(path.read_text()))


def _manifest(ir: dict[str, Any], name: str, **parameters: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "pipelines.ketch.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": name},
            "spec": {"pipelineSpec": ir, "parameters": parameters},
        }
    )


def _apply_run(ketch: Ketch, ns: str, manifest: str) -> str:  # noqa: F811
    line = ok(ketch("apply", "-f", "-", "-n", ns, stdin=manifest)).strip()
    kind_name, result = line.split()
    assert result == "created" and kind_name.startswith("pipelinerun/")
    return kind_name.split("/", 1)[1]


def test_run_lifecycle_from_the_cli(ketch: Ketch, ns: str, ir: dict[str, Any]) -> None:  # noqa: F811
    run_id = _apply_run(ketch, ns, _manifest(ir, "greet", msg=f"cli-{ns}"))
    waited = ketch(
        "wait",
        "run",
        run_id,
        "-n",
        ns,
        "--for",
        "condition=Succeeded",
        "--timeout",
        "90",
        timeout=120,
    )
    assert ok(waited).strip() == f"pipelinerun/{run_id} condition met"

    table = ok(ketch("runs", "list", "-n", ns)).splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "CREATED", "DURATION"]
    assert table[1].split()[:3] == [run_id, "greet", "SUCCEEDED"]
    assert (
        json.loads(ok(ketch("runs", "list", "-n", ns, "-o", "json")))["items"][0]["metadata"][
            "name"
        ]
        == run_id
    )
    for kind in ("runs", "run", "pipelinerun", "PipelineRuns"):
        assert run_id in ok(ketch("get", kind, "-n", ns))

    shown = ok(ketch("runs", "get", run_id, "-n", ns))
    assert (
        "SUCCEEDED" in shown
        and "Tasks:" in shown
        and "say-2" in shown
        and "pipelineSpec" not in shown
    )
    described = ok(ketch("describe", "run", run_id, "-n", ns))
    assert "Conditions:" in described and "Succeeded" in described

    logs = ok(ketch("runs", "logs", run_id, "-n", ns))
    assert "==> say <==" in logs and f"hello from cli-{ns}" in logs
    one = ok(ketch("logs", "run", run_id, "-n", ns, "--task", "say", "--follow"))
    assert f"hello from cli-{ns}" in one and "==>" not in one
    bad(ketch("runs", "logs", run_id, "-n", ns, "--task", "nope"), 2, "no task 'nope'")

    assert ok(ketch("delete", "run", run_id, "-n", ns)).strip() == f"pipelinerun/{run_id} deleted"
    bad(ketch("runs", "get", run_id, "-n", ns), 2, "not found")


def test_cancel_and_retry_from_the_cli(
    ketch: Ketch,  # noqa: F811
    client: httpx.Client,
    ns: str,
    slow_ir: dict[str, Any],
) -> None:
    run_id = _apply_run(ketch, ns, _manifest(slow_ir, "slow", seconds=60.0))
    ok(
        ketch(
            "wait",
            "run",
            run_id,
            "-n",
            ns,
            "--for",
            "condition=Running",
            "--timeout",
            "60",
            timeout=90,
        )
    )
    assert ok(ketch("runs", "cancel", run_id, "-n", ns)).startswith(f"run {run_id} canceled")
    ok(
        ketch(
            "wait",
            "run",
            run_id,
            "-n",
            ns,
            "--for",
            "condition=Canceled",
            "--timeout",
            "30",
            timeout=60,
        )
    )
    bad(ketch("delete", "run", run_id, "-n", ns + "x"), 2, "not found")
    assert ok(ketch("runs", "retry", run_id, "-n", ns)).startswith(f"run {run_id} retried")
    ok(
        ketch(
            "wait",
            "run",
            run_id,
            "-n",
            ns,
            "--for",
            "condition=Running",
            "--timeout",
            "60",
            timeout=90,
        )
    )
    ok(ketch("runs", "cancel", run_id, "-n", ns))
    ok(
        ketch(
            "wait",
            "run",
            run_id,
            "-n",
            ns,
            "--for",
            "condition=Canceled",
            "--timeout",
            "30",
            timeout=60,
        )
    )
    # a finished run: nothing is canceled, and the command says so
    bad(
        ketch("runs", "cancel", run_id, "-n", ns),
        1,
        "already finished (CANCELED); nothing was canceled",
    )
    bad(ketch("runs", "cancel", "no-such-run", "-n", ns), 2, "not found")


def test_no_server_message(tmp_path: Path) -> None:
    from tests.server.helpers import base_env, free_port, ketch_command

    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path)
    env["KETCH_URL"] = url
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: a}\n")
    for args in (
        ["apply", "-f", str(manifest)],
        ["get", "pytorchjobs"],
        ["describe", "pytorchjob", "a"],
        ["delete", "pytorchjob", "a"],
        ["logs", "pytorchjob", "a"],
        ["wait", "pytorchjob", "a", "--for", "condition=Ready"],
        ["runs", "list"],
        ["runs", "get", "a"],
        ["runs", "logs", "a"],
        ["runs", "cancel", "a"],
        ["runs", "retry", "a"],
    ):
        result = subprocess.run(
            [*ketch_command(), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.strip() == (
            f"error: no Ketch server at {url}; start one with 'ketch up' (or set KETCH_URL)"
        ), (args, result.stderr)
