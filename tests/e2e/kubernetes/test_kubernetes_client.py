"""The ``kubernetes`` Python client against ``ketch up``, configured by the kubeconfig
``ketch kubeconfig`` wrote: CustomObjectsApi on PyTorchJobs, and its watch."""

from __future__ import annotations

from tests.e2e.kubernetes.sdk import Sdk
from tests.server.fixtures import job

CRUD = """
from kubernetes import client, config

config.load_kube_config()
api = client.CustomObjectsApi()
G, V, P = "kubeflow.org", "v1", "pytorchjobs"
created = api.create_namespaced_custom_object(G, V, ns, P, labelled)
api.create_namespaced_custom_object(G, V, ns, P, other)
got = api.get_namespaced_custom_object(G, V, ns, P, labelled["metadata"]["name"])
everything = api.list_namespaced_custom_object(G, V, ns, P)
selected = api.list_namespaced_custom_object(G, V, ns, P, label_selector="app=e2e")
patched = api.patch_namespaced_custom_object(
    G, V, ns, P, labelled["metadata"]["name"], {"metadata": {"labels": {"stage": "patched"}}}
)
deleted = api.delete_namespaced_custom_object(G, V, ns, P, labelled["metadata"]["name"])
try:
    api.get_namespaced_custom_object(G, V, ns, P, labelled["metadata"]["name"])
    after = None
except client.ApiException as exc:
    after = exc.status
api.delete_namespaced_custom_object(G, V, ns, P, other["metadata"]["name"])
result = {
    "created": created["metadata"],
    "got": got["metadata"],
    "everything": sorted(i["metadata"]["name"] for i in everything["items"]),
    "selected": [i["metadata"]["name"] for i in selected["items"]],
    "patched": patched["metadata"],
    "deleted": deleted["metadata"]["name"],
    "after": after,
}
"""


def test_custom_objects_crud_of_a_pytorchjob(sdk: Sdk, ns: str) -> None:
    labelled = job("mnist", labels={"app": "e2e"})
    other = job("other")
    out = sdk.run(CRUD, ns=ns, labelled=labelled, other=other)
    assert out["created"]["name"] == "mnist" and out["created"]["namespace"] == ns
    assert out["created"]["uid"] and out["created"]["resourceVersion"]
    assert out["got"]["uid"] == out["created"]["uid"]
    assert out["everything"] == ["mnist", "other"]
    assert out["selected"] == ["mnist"]
    assert out["patched"]["labels"] == {"app": "e2e", "stage": "patched"}
    assert out["deleted"] == "mnist"
    assert out["after"] == 404


WATCH = """
from kubernetes import client, config, watch

config.load_kube_config()
api = client.CustomObjectsApi()
G, V, P = "kubeflow.org", "v1", "pytorchjobs"
api.create_namespaced_custom_object(G, V, ns, P, manifest)
name = manifest["metadata"]["name"]
events = []
w = watch.Watch()
for event in w.stream(api.list_namespaced_custom_object, G, V, ns, P, timeout_seconds=30):
    labels = event["object"]["metadata"].get("labels") or {}
    events.append([event["type"], event["object"]["metadata"]["name"]])
    if event["type"] == "ADDED":
        added_version = event["object"]["metadata"]["resourceVersion"]
        api.patch_namespaced_custom_object(G, V, ns, P, name, {"metadata": {"labels": {"x": "1"}}})
    elif labels.get("x") == "1":  # the controller may write the status in between
        w.stop()
# Resuming from the ADDED event's resourceVersion sees only what came after it.
resumed = []
w = watch.Watch()
for event in w.stream(
    api.list_namespaced_custom_object, G, V, ns, P,
    resource_version=added_version, timeout_seconds=30,
):
    metadata = event["object"]["metadata"]
    labels = metadata.get("labels") or {}
    resumed.append([event["type"], labels, int(metadata["resourceVersion"])])
    if labels.get("x") == "1":
        w.stop()
api.delete_namespaced_custom_object(G, V, ns, P, name)
result = {"events": events, "resumed": resumed, "added": int(added_version)}
"""


def test_watch_stream_sees_added_and_modified_and_resumes(sdk: Sdk, ns: str) -> None:
    out = sdk.run(WATCH, ns=ns, manifest=job("watched"))
    events, resumed = out["events"], out["resumed"]
    assert events[0] == ["ADDED", "watched"]
    assert events[1:] and all(e == ["MODIFIED", "watched"] for e in events[1:])
    # resumed: only changes after the ADDED event's version, the label patch last
    assert resumed and all(t == "MODIFIED" and rv > out["added"] for t, _l, rv in resumed)
    assert resumed[-1][1] == {"x": "1"}


CONTROLLER_WRITES = """
from kubernetes import client, config, watch

config.load_kube_config()
core, custom = client.CoreV1Api(), client.CustomObjectsApi()
start = core.list_namespace().metadata.resource_version
custom.create_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", manifest)
# the namespace comes into being with its first object: ADDED in a watch from before
namespaces = []
w = watch.Watch()
for event in w.stream(core.list_namespace, resource_version=start, timeout_seconds=30):
    if event["object"].metadata.name == ns:
        namespaces.append([event["type"], int(event["object"].metadata.resource_version)])
        w.stop()
# the pods the controller writes as the replica starts and ends, from the same version
pods = []
w = watch.Watch()
for event in w.stream(
    core.list_namespaced_pod, ns, resource_version=start, timeout_seconds=120
):
    pod = event["object"]
    pods.append([event["type"], pod.metadata.name, pod.status.phase,
                 int(pod.metadata.resource_version)])
    if pod.status.phase in ("Succeeded", "Failed"):
        w.stop()
custom.delete_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", "ran")
result = {"start": int(start), "namespaces": namespaces, "pods": pods}
"""


def test_a_controllers_pods_and_a_new_namespace_reach_a_resumed_watch(sdk: Sdk, ns: str) -> None:
    """Writes the server's controllers make (a job's pods) and a namespace coming into
    being are journaled: a watch resumed from a version before them gets each, in
    order, after that version."""
    manifest = job("ran", spec={"runPolicy": {"suspend": False}})
    manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "command"
    ] = ["python", "-c", "print('ran')"]
    out = sdk.run(CONTROLLER_WRITES, ns=ns, manifest=manifest)
    ((kind, added_at),) = out["namespaces"]
    assert kind == "ADDED" and added_at > out["start"]
    pods = out["pods"]
    assert pods[0][:2] == ["ADDED", "ran-master-0"]
    assert all(p[:2] == ["MODIFIED", "ran-master-0"] for p in pods[1:])
    assert pods[-1][2] == "Succeeded"
    versions = [p[3] for p in pods]
    assert versions == sorted(set(versions)) and versions[0] > added_at
