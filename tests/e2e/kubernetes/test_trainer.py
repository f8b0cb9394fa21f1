"""The kubeflow SDK's ``TrainerClient`` (Kubernetes backend) against ``ketch up``:
the runtimes Ketch ships, a TrainJob from a Python function, its status and logs."""

from __future__ import annotations

from tests.e2e.kubernetes.sdk import Sdk

CLIENT = """
from kubeflow.trainer import CustomTrainer, KubernetesBackendConfig, TrainerClient

trainer = TrainerClient(KubernetesBackendConfig(namespace=ns))


def train():
    print("hello from the trainer")
"""

LIST_RUNTIMES = (
    CLIENT
    + """
result = [[r.name, r.kind.value, r.trainer.framework] for r in trainer.list_runtimes()]
"""
)


def test_list_runtimes(sdk: Sdk, ns: str) -> None:
    runtimes = {name: (kind, framework) for name, kind, framework in sdk.run(LIST_RUNTIMES, ns=ns)}
    assert runtimes["torch-distributed"] == ("ClusterTrainingRuntime", "torch")


TRAIN = (
    CLIENT
    + """
from kubernetes import client, config

runtime = next(r for r in trainer.list_runtimes() if r.name == "torch-distributed")
name = trainer.train(runtime=runtime, trainer=CustomTrainer(func=train))
config.load_kube_config()
stored = client.CustomObjectsApi().get_namespaced_custom_object(
    "trainer.kubeflow.org", "v1alpha1", ns, "trainjobs", name
)
trainer.delete_job(name)
result = {"name": name, "runtime": stored["spec"]["runtimeRef"]["name"]}
"""
)


def test_train_creates_a_trainjob(sdk: Sdk, ns: str) -> None:
    out = sdk.run(TRAIN, ns=ns)
    assert out["name"]
    assert out["runtime"] == "torch-distributed"


GET_RUNTIME = (
    CLIENT
    + """
runtime = trainer.get_runtime("torch-distributed")
result = [runtime.name, runtime.kind.value]
"""
)


def test_get_runtime(sdk: Sdk, ns: str) -> None:
    assert sdk.run(GET_RUNTIME, ns=ns) == ["torch-distributed", "ClusterTrainingRuntime"]


WAIT_AND_LOGS = (
    CLIENT
    + """
runtime = next(r for r in trainer.list_runtimes() if r.name == "torch-distributed")
name = trainer.train(runtime=runtime, trainer=CustomTrainer(func=train))
try:
    job = trainer.wait_for_job_status(name, timeout=240, polling_interval=1)
    logs = list(trainer.get_job_logs(name))
finally:
    trainer.delete_job(name)
result = {"status": job.status, "logs": logs}
"""
)


def test_wait_for_job_status_and_logs(sdk: Sdk, ns: str) -> None:
    out = sdk.run(WAIT_AND_LOGS, ns=ns, timeout=280)
    assert out["status"] == "Complete"
    assert any("hello from the trainer" in line for line in out["logs"]), out["logs"]
