"""The quota arithmetic of :mod:`ketch.core.quota` and :mod:`ketch.core.charges` over a
real store: the hard limits read from a stored Profile, pods charged to a namespace and
released, exactly, what stored pods held before a restart, quantities printed as
Kubernetes prints them."""

from __future__ import annotations

import threading

import pytest

from ketch.core import charges, quota
from ketch.core.kinds import Kind, registry_of
from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.core.store.pods import ContainerRecord, Owner, PodRecord, PodStore
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import Container

JOB = Kind(kind="PyTorchJob", group="kubeflow.org", versions=("v1",), plural="pytorchjobs")


@pytest.fixture
def store(database: Database) -> ResourceStore:
    return ResourceStore(database)


def _profile(store: ResourceStore, name: str, hard: dict[str, str]) -> None:
    store.apply(
        Resource.from_manifest(
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "Profile",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "owner": {"kind": "User", "name": "a@example.com"},
                    "resourceQuotaSpec": {"hard": hard},
                },
            }
        )
    )


def _container(**requests: str) -> Container:
    return Container.model_validate(
        {"name": "main", "command": ["true"], "resources": {"requests": requests}}
    )


@pytest.mark.parametrize(
    ("resource", "value", "shown"),
    [
        ("cpu", 0.5, "500m"),
        ("cpu", 2.0, "2"),
        ("requests.cpu", 0.25, "250m"),
        ("memory", 2**30, "1Gi"),
        ("limits.memory", 1.5 * 2**30, "1536Mi"),
        ("requests.memory", 1000.0, "1000"),
        ("pods", 3.0, "3"),
        ("requests.nvidia.com/gpu", 1.0, "1"),
    ],
)
def test_quantities_print_as_kubernetes_prints_them(
    resource: str, value: float, shown: str
) -> None:
    assert quota.show(resource, value) == shown


def test_count_names_follow_kubernetes() -> None:
    assert quota.count_names(JOB) == ("count/pytorchjobs.kubeflow.org",)
    configmaps = Kind(kind="ConfigMap", group="", versions=("v1",), plural="configmaps")
    assert quota.count_names(configmaps) == ("count/configmaps", "configmaps")


def test_the_ledger_charges_whole_gangs_and_releases_them(store: ResourceStore) -> None:
    _profile(store, "team", {"cpu": "1", "memory": "1Gi", "pods": "3"})
    ledger = charges.QuotaLedger()
    half = _container(cpu="500m", memory="256Mi")
    assert ledger.admit(store, "a", "team", [("a-0", [half])]) is None
    assert ledger.admit(store, "a", "team", [("a-0", [half])]) is None  # charged once
    refused = ledger.admit(store, "b", "team", [("b-0", [half]), ("b-1", [half])])
    assert refused == (
        'Error creating: pods "b-0" (and 1 more pods of the gang) is forbidden: exceeded '
        "quota: kf-resource-quota, requested: cpu=1, used: cpu=500m, limited: cpu=1"
    )
    assert ledger.used("team")["requests.cpu"] == 0.5  # nothing of b was charged
    # another namespace (no profile) is not limited and not counted here
    assert ledger.admit(store, "c", "other", [("c-0", [half])] * 4) is None
    assert ledger.used("team")["pods"] == 1
    ledger.release("a")
    assert ledger.admit(store, "b", "team", [("b-0", [half]), ("b-1", [half])]) is None
    assert ledger.used("team") == {
        "requests.cpu": 1.0,
        "requests.memory": float(2**29),
        "limits.cpu": 0.0,
        "limits.memory": 0.0,
        "requests.nvidia.com/gpu": 0.0,
        "pods": 2.0,
    }


def test_a_request_defaults_to_the_limit_and_gpus_are_counted(store: ResourceStore) -> None:
    _profile(store, "gpus", {"requests.nvidia.com/gpu": "1", "limits.cpu": "1"})
    ledger = charges.QuotaLedger()
    gpu = Container.model_validate(
        {
            "name": "main",
            "command": ["true"],
            "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "2"}},
        }
    )
    refused = ledger.admit(store, "g", "gpus", [("g-0", [gpu])])
    assert refused is not None
    # only what is exceeded is named, as Kubernetes masks its message
    assert refused.endswith(
        "requested: limits.cpu=2,requests.nvidia.com/gpu=2, "
        "used: limits.cpu=0,requests.nvidia.com/gpu=0, "
        "limited: limits.cpu=1,requests.nvidia.com/gpu=1"
    )
    one = Container.model_validate(
        {"name": "main", "command": ["true"], "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    )
    assert ledger.admit(store, "h", "gpus", [("h-0", [one])]) is None
    assert ledger.used("gpus")["requests.nvidia.com/gpu"] == 1.0


def test_a_create_past_a_count_is_refused(store: ResourceStore) -> None:
    _profile(store, "counted", {"count/pytorchjobs.kubeflow.org": "1"})
    new = Resource.from_manifest(
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": "second", "namespace": "counted"},
            "spec": {},
        }
    )
    lock = threading.Lock()
    with quota.admit_create(store, lock, JOB, new, lambda: 0):
        pass
    with (
        pytest.raises(quota.QuotaExceeded) as refused,
        quota.admit_create(store, lock, JOB, new, lambda: 1),
    ):
        pass
    assert refused.value.http_status == 403
    assert str(refused.value) == (
        'pytorchjobs.kubeflow.org "second" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: count/pytorchjobs.kubeflow.org=1, used: count/pytorchjobs.kubeflow.org=1, "
        "limited: count/pytorchjobs.kubeflow.org=1"
    )


def test_usage_reports_hard_and_used(store: ResourceStore) -> None:
    _profile(store, "seen", {"cpu": "2", "count/pytorchjobs.kubeflow.org": "5"})
    store.apply(
        Resource.from_manifest(
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "PyTorchJob",
                "metadata": {"name": "one", "namespace": "seen"},
                "spec": {},
            }
        )
    )
    charges.ledger_of(store).admit(store, "k", "seen", [("k-0", [_container(cpu="1500m")])])
    try:
        assert charges.usage(store, "seen", registry_of([JOB])) == {
            "hard": {"cpu": "2", "count/pytorchjobs.kubeflow.org": "5"},
            "used": {"cpu": "1500m", "count/pytorchjobs.kubeflow.org": "1"},
        }
    finally:
        charges.ledger_of(store).release("k")
    assert charges.usage(store, "no-profile") == {"hard": {}, "used": {}}


def test_quantities_add_up_exactly(store: ResourceStore) -> None:
    # ten pods of 100m fill a quota of 1 CPU exactly, and an exabyte of memory to the byte
    _profile(store, "exact", {"cpu": "1", "memory": "1E"})
    ledger = charges.QuotaLedger()
    for index in range(10):
        pod = f"p-{index}"
        assert ledger.admit(store, pod, "exact", [(pod, [_container(cpu="100m")])]) is None
    assert ledger.used("exact")["requests.cpu"] == 1
    refused = ledger.admit(store, "p-10", "exact", [("p-10", [_container(cpu="100m")])])
    assert refused == (
        'Error creating: pods "p-10" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: cpu=100m, used: cpu=1, limited: cpu=1"
    )
    # 10**18 - 1 bytes and one more fit; a float would call a byte more the same amount
    big = _container(memory=str(10**18 - 1))
    assert ledger.admit(store, "big", "exact", [("big", [big])]) is None
    assert ledger.admit(store, "one", "exact", [("one", [_container(memory="1")])]) is None
    assert ledger.admit(store, "two", "exact", [("two", [_container(memory="1")])]) is not None
    assert ledger.used("exact")["requests.memory"] == 10**18


def test_a_charge_takes_more_pods_and_gives_some_back(store: ResourceStore) -> None:
    _profile(store, "grow", {"pods": "2"})
    ledger = charges.QuotaLedger()
    one = [_container(cpu="1")]
    assert ledger.admit(store, "job", "grow", [("job-0", one)]) is None
    assert ledger.admit(store, "job", "grow", [("job-0", one), ("job-1", one)]) is None
    assert ledger.charged("job") == ("job-0", "job-1")
    assert ledger.admit(store, "job", "grow", [("job-2", one)]) == (
        'Error creating: pods "job-2" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: pods=1, used: pods=2, limited: pods=2"
    )
    ledger.release("job", ["job-0"])
    assert ledger.charged("job") == ("job-1",)
    assert ledger.admit(store, "job", "grow", [("job-2", one)]) is None
    ledger.release("job")
    assert ledger.used("grow")["pods"] == 0


def _stored_pod(pods: PodStore, namespace: str, owner: str, name: str, phase: str) -> None:
    container = ContainerRecord(
        name="main",
        spec={"name": "main", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}},
        state="running" if phase == "Running" else "terminated",
    )
    pods.put(
        [
            PodRecord(
                namespace=namespace,
                name=name,
                owner=Owner("kubeflow.org/v1", "PyTorchJob", owner, f"uid-{owner}"),
                containers=[container],
                phase=phase,  # type: ignore[arg-type]
            )
        ]
    )


def test_after_a_restart_the_stored_pods_hold_their_quota(store: ResourceStore) -> None:
    # what ran when the server stopped (its pods still Running in the store) holds the
    # quota before anything is charged, and is handed to its owner as it starts again
    _profile(store, "restarted", {"cpu": "2"})
    pods = PodStore(store.database)
    _stored_pod(pods, "restarted", "old", "old-master-0", "Running")
    _stored_pod(pods, "restarted", "done", "done-master-0", "Succeeded")
    ledger = charges.QuotaLedger(charges.stored_claims(store))
    assert ledger.used("restarted")["requests.cpu"] == 1
    assert ledger.used("restarted")["limits.cpu"] == 2
    old = charges.owner_key("PyTorchJob", "restarted", "old")
    assert ledger.holds(old)
    two = [_container(cpu="2")]
    assert ledger.admit(store, "new", "restarted", [("new-0", two)]) == (
        'Error creating: pods "new-0" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: cpu=2, used: cpu=1, limited: cpu=2"
    )
    # the job that ran starts again: what it held pays for it, nothing is counted twice
    again = Container.model_validate(
        {"name": "main", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}}
    )
    assert ledger.admit(store, old, "restarted", [("old-master-0", [again])]) is None
    assert not ledger.holds(old)
    assert ledger.used("restarted")["requests.cpu"] == 1
    ledger.release(old)
    assert ledger.admit(store, "new", "restarted", [("new-0", two)]) is None


def test_what_nothing_comes_back_for_is_dropped(store: ResourceStore) -> None:
    _profile(store, "settled", {"pods": "1"})
    _stored_pod(PodStore(store.database), "settled", "gone", "gone-master-0", "Running")
    ledger = charges.QuotaLedger(charges.stored_claims(store))
    gone = charges.owner_key("PyTorchJob", "settled", "gone")
    assert ledger.admit(store, "new", "settled", [("new-0", [_container()])]) is not None
    ledger.settle(gone)  # its controller found it finished: it starts nothing
    assert ledger.admit(store, "new", "settled", [("new-0", [_container()])]) is None
    # held charges no controller settles end after a while
    _profile(store, "expired", {"pods": "1"})
    _stored_pod(PodStore(store.database), "expired", "lost", "lost-master-0", "Running")
    short = charges.QuotaLedger(charges.stored_claims(store), hold=0.0)
    assert short.used("expired")["pods"] == 0
