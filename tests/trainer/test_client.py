"""TrainerClient against a real ``ketch up``: TrainJobs of real functions, real torch."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ketch.core.errors import InvalidSpec, NotFound
from ketch.trainer.client import (
    CustomTrainer,
    DatasetInitializer,
    Initializer,
    TrainerClient,
)
from ketch.trainer.manifests import function_command, function_script, resources_per_node
from tests.server.helpers import Server


@pytest.fixture
def trainer(server: Server) -> Iterator[TrainerClient]:
    """A client of the test's own namespace; every TrainJob left in it is deleted."""
    with TrainerClient(server.url, namespace=f"t-{time.monotonic_ns() % 10**10}") as client:
        yield client
        for job in client.list_jobs():
            client.delete_job(job.name)


def allreduce(scale: float) -> None:
    import os

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank + 1) * scale])
    dist.all_reduce(value)
    print(f"rank {rank} of {world}: sum={value.item():g} env={os.environ.get('GREETING')}")
    dist.destroy_process_group()


def test_two_node_allreduce(trainer: TrainerClient) -> None:
    name = trainer.train(
        runtime="torch-distributed",
        trainer=CustomTrainer(
            func=allreduce,
            func_args={"scale": 2.0},
            num_nodes=2,
            resources_per_node={"cpu": 1},
            env={"GREETING": "hello"},
        ),
    )
    job = trainer.wait_for_job_status(name, timeout=180, polling_interval=0.2)
    assert job.status == "Complete" and job.num_nodes == 2
    assert job.runtime.name == "torch-distributed"
    assert {"node-0", "node-1"} <= {step.name for step in job.steps}
    lines = [line for line in trainer.get_job_logs(name) if "sum=" in line]
    assert lines, list(trainer.get_job_logs(name))
    world = int(lines[0].split(" of ")[1].split(":")[0])
    assert world >= 2 and world % 2 == 0  # every node runs its share of the processes
    expected = 2.0 * world * (world + 1) / 2
    assert f"sum={expected:g} env=hello" in lines[0]
    assert any("sum=" in line for line in trainer.get_job_logs(name, step="node-1"))


def read_dataset(column: int) -> None:
    import csv

    with open("/workspace/dataset/data.csv") as handle:  # Trainer's path, as users write it
        total = sum(float(row[column]) for row in csv.reader(handle))
    print(f"total={total:g}")


def test_initializer_fetches_the_dataset_into_the_workspace(
    trainer: TrainerClient, tmp_path: Path
) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "data.csv").write_text("1,10\n2,20\n3,30\n")
    name = trainer.train(
        runtime="torch-distributed",
        initializer=Initializer(dataset=DatasetInitializer(storage_uri=f"file://{source}")),
        trainer=CustomTrainer(func=read_dataset, func_args={"column": 1}, num_nodes=1),
    )
    job = trainer.wait_for_job_status(name, timeout=180, polling_interval=0.2)
    assert job.status == "Complete"
    assert any("total=60" in line for line in trainer.get_job_logs(name))
    with pytest.raises(InvalidSpec) as info:
        trainer.train(runtime="torch-distributed", initializer={"dataset": "x"})  # type: ignore[arg-type]
    assert info.value.field == "initializer"


def chatty(count: int, pause: float) -> None:
    import time

    for index in range(count):
        print(f"line {index}", flush=True)
        time.sleep(pause)


def test_follow_streams_logs_while_running(trainer: TrainerClient) -> None:
    name = trainer.train(
        trainer=CustomTrainer(func=chatty, func_args={"count": 4, "pause": 1.0}, num_nodes=1)
    )
    seen: list[str] = []
    status_at_first_line = None
    for line in trainer.get_job_logs(name, follow=True):
        if line.startswith("line "):
            if not seen:
                status_at_first_line = trainer.get_job(name).status
            seen.append(line)
    assert seen == [f"line {i}" for i in range(4)]
    assert status_at_first_line == "Running"  # streamed while the job ran, not after
    assert trainer.wait_for_job_status(name, timeout=60, polling_interval=0.1).status == "Complete"


def fails() -> None:
    raise SystemExit("this function fails on purpose")


def test_wait_for_a_failing_job(trainer: TrainerClient) -> None:
    name = trainer.train(trainer=CustomTrainer(func=fails))
    with pytest.raises(RuntimeError, match=f"TrainJob {name} is Failed"):
        trainer.wait_for_job_status(name, timeout=120, polling_interval=0.1)
    assert (
        trainer.wait_for_job_status(name, {"Failed"}, timeout=5, polling_interval=0.1).status
        == "Failed"
    )
    assert "fails on purpose" in "\n".join(trainer.get_job_logs(name))
    with pytest.raises(InvalidSpec, match="status"):
        trainer.wait_for_job_status(name, {"Finished"})


def sleeps() -> None:
    import time

    time.sleep(120)


def test_list_and_delete(trainer: TrainerClient) -> None:
    names = {trainer.train(trainer=CustomTrainer(func=sleeps)) for _ in range(2)}
    listed = trainer.list_jobs()
    assert {job.name for job in listed} == names
    assert all(job.runtime.name == "torch-distributed" for job in listed)
    assert {job.name for job in trainer.list_jobs(runtime="jax-distributed")} == set()
    first, second = sorted(names)
    with pytest.raises(TimeoutError, match=first):
        trainer.wait_for_job_status(first, timeout=0.3, polling_interval=0.1)
    trainer.delete_job(first)
    with pytest.raises(NotFound, match=first):
        trainer.get_job(first)
    assert [job.name for job in trainer.list_jobs()] == [second]
    trainer.delete_job(second)
    assert trainer.list_jobs() == []


def test_runtimes_and_a_bad_runtime_name(trainer: TrainerClient) -> None:
    runtimes = {runtime.name: runtime for runtime in trainer.list_runtimes()}
    assert "torch-distributed" in runtimes
    torch_runtime = trainer.get_runtime("torch-distributed")
    assert torch_runtime.trainer.framework == "torch"
    assert torch_runtime.trainer.num_nodes >= 1
    with pytest.raises(NotFound) as raised:
        trainer.train(runtime="no-such-runtime", trainer=CustomTrainer(func=fails))
    message = str(raised.value)
    assert "no training runtime 'no-such-runtime'" in message and "torch-distributed" in message
    assert trainer.list_jobs() == []  # nothing was created


def uses_probe() -> None:
    import ketchprobe

    print(f"probe says {ketchprobe.VALUE}")


def probe_wheel(folder: Path) -> Path:
    """A tiny wheel on disk: installing it needs no package index."""
    files = {
        "ketchprobe/__init__.py": "VALUE = 42\n",
        "ketchprobe-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: ketchprobe\nVersion: 0.1\n",
        "ketchprobe-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: ketch-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append("ketchprobe-0.1.dist-info/RECORD,,")
    wheel = folder / "ketchprobe-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr("ketchprobe-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.mark.skipif(
    importlib.util.find_spec("ketchprobe") is not None, reason="needs a missing package"
)
def test_packages_to_install(trainer: TrainerClient, tmp_path: Path) -> None:
    wheel = probe_wheel(tmp_path)
    name = trainer.train(trainer=CustomTrainer(func=uses_probe, packages_to_install=[str(wheel)]))
    trainer.wait_for_job_status(name, timeout=180, polling_interval=0.2)
    assert "probe says 42" in "\n".join(trainer.get_job_logs(name))
    assert importlib.util.find_spec("ketchprobe") is None  # installed for the job only


def test_function_commands() -> None:
    script = function_script(CustomTrainer(func=chatty, func_args={"count": 2, "pause": 0.5}))
    assert script.startswith("def chatty(count: int, pause: float) -> None:")
    assert script.rstrip().endswith("chatty(**{'count': 2, 'pause': 0.5})")
    command = function_command(
        CustomTrainer(
            func=fails, packages_to_install=["numpy"], pip_index_urls=["https://a", "https://b"]
        ),
        "torch",
    )
    assert command[:3] == ["python", "-m", "ketch.trainer.function_runner"]
    assert command[3:9] == [
        "--package",
        "numpy",
        "--pip-option=--index-url=https://a",
        "--pip-option=--extra-index-url=https://b",
        "--launcher",
        "torchrun",
    ]
    assert function_command(CustomTrainer(func=fails), "jax")[-2] == "python"
    assert resources_per_node({"cpu": 2, "memory": "1Gi", "gpu": 1}) == {
        "requests": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "2", "nvidia.com/gpu": "1"},
    }
    with pytest.raises(InvalidSpec, match="trainer.func_args"):
        function_script(CustomTrainer(func=chatty, func_args={"count": object()}))
    with pytest.raises(InvalidSpec, match="lambda"):
        function_script(CustomTrainer(func=lambda: None))
