"""The ``kubernetes`` Python client's CoreV1Api on the pods of a PyTorchJob running in
``ketch up``: list them by the operator's labels, read and follow a replica's log."""

from __future__ import annotations

from tests.e2e.kubernetes.sdk import Sdk

PODS = """
import time
from kubernetes import client, config, watch

config.load_kube_config()
custom = client.CustomObjectsApi()
core = client.CoreV1Api()
job = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {"name": "e2e-pods"},
    "spec": {
        "pytorchReplicaSpecs": {
            role: {
                "replicas": 1,
                "template": {"spec": {"containers": [{
                    "name": "pytorch",
                    "image": "docker.io/pytorch/pytorch:2",
                    "command": ["python", "-c", f"import time\\nfor i in range(4):\\n print('{role}', i, flush=True); time.sleep(0.3)"],
                }]}},
            }
            for role in ("Master", "Worker")
        }
    },
}
custom.create_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", job)
selector = "training.kubeflow.org/job-name=e2e-pods,training.kubeflow.org/replica-type=master"
for _ in range(300):
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    if pods and pods[0].status.phase == "Running":
        break
    time.sleep(0.1)
followed = list(watch.Watch().stream(
    core.read_namespaced_pod_log, name=pods[0].metadata.name, namespace=ns, follow=True
))
for _ in range(300):
    listed = core.list_namespaced_pod(ns, label_selector="training.kubeflow.org/job-name=e2e-pods")
    if {p.status.phase for p in listed.items} == {"Succeeded"}:
        break
    time.sleep(0.1)
log = core.read_namespaced_pod_log("e2e-pods-worker-0", ns, tail_lines=2)
custom.delete_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", "e2e-pods")
result = {
    "names": sorted(p.metadata.name for p in listed.items),
    "phases": sorted(p.status.phase for p in listed.items),
    "restarts": [c.restart_count for p in listed.items for c in p.status.container_statuses],
    "exit_codes": [c.state.terminated.exit_code for p in listed.items for c in p.status.container_statuses],
    "owner": listed.items[0].metadata.owner_references[0].kind,
    "followed": followed,
    "tail": log,
}
"""


def test_list_pods_and_read_their_logs(sdk: Sdk, ns: str) -> None:
    out = sdk.run(PODS, ns=ns, timeout=120)
    assert out["names"] == ["e2e-pods-master-0", "e2e-pods-worker-0"]
    assert out["phases"] == ["Succeeded", "Succeeded"]
    assert out["restarts"] == [0, 0] and out["exit_codes"] == [0, 0]
    assert out["owner"] == "PyTorchJob"
    assert out["followed"] == [f"Master {i}" for i in range(4)]
    assert out["tail"] == "Worker 2\nWorker 3\n"
