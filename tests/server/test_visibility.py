"""What a list across namespaces reads for a caller (ketch.server.visibility): one
visible namespace is read alone, several are filtered row by row, none reads nothing;
Namespaces and Profiles are shown by name, other cluster-scoped kinds to everyone."""

from __future__ import annotations

from ketch.core.kinds import Kind
from ketch.server.visibility import narrowed, object_filter

JOB = Kind(kind="PyTorchJob", group="kubeflow.org", versions=("v1",), plural="pytorchjobs")
PROFILE = Kind(
    kind="Profile", group="kubeflow.org", versions=("v1",), plural="profiles", namespaced=False
)
RUNTIME = Kind(
    kind="ClusterTrainingRuntime",
    group="trainer.kubeflow.org",
    versions=("v1alpha1",),
    plural="clustertrainingruntimes",
    namespaced=False,
)


def _object(namespace: str, name: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name}}


def test_everyone_sees_everything_without_a_visible_set() -> None:
    assert narrowed(JOB, None, None) == (None, None, False)
    assert object_filter(PROFILE, None) is None


def test_one_visible_namespace_is_read_alone() -> None:
    assert narrowed(JOB, None, frozenset({"team-a"})) == ("team-a", None, False)


def test_several_namespaces_are_filtered_row_by_row() -> None:
    namespace, visible, nothing = narrowed(JOB, None, frozenset({"team-a", "team-b"}))
    assert (namespace, nothing) == (None, False)
    assert visible is not None
    assert visible(_object("team-a", "x")) and visible(_object("team-b", "y"))
    assert not visible(_object("team-c", "x"))


def test_no_visible_namespace_reads_nothing() -> None:
    _namespace, visible, nothing = narrowed(JOB, None, frozenset())
    assert nothing and visible is not None and not visible(_object("team-a", "x"))


def test_profiles_are_shown_by_name_and_other_cluster_kinds_to_everyone() -> None:
    namespace, visible, nothing = narrowed(PROFILE, "default", frozenset({"team-a"}))
    assert (namespace, nothing) == ("default", False)  # where cluster objects are kept
    assert visible is not None
    assert visible(_object("default", "team-a")) and not visible(_object("default", "team-b"))
    assert narrowed(RUNTIME, "default", frozenset()) == ("default", None, False)
