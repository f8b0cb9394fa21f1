"""``ketch apply``: several -f, directories (-R), stdin, multi-document files, and
documents refused one by one, run as real ``ketch`` subprocesses against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.cli.helpers import Ketch, bad, ok
from tests.server.fixtures import jobs_path

SPEC = """\
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template: {spec: {containers: [{name: pytorch, image: example/trainer, command: ["true"]}]}}
"""


def job(name: str) -> dict[str, Any]:
    """A PyTorchJob whose one replica exits at once."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        **yaml.safe_load(SPEC),
    }


def _names(client: httpx.Client, ns: str) -> list[str]:
    return sorted(i["metadata"]["name"] for i in client.get(jobs_path(ns)).json()["items"])


def test_several_files_each_applied_in_order(
    ketch: Ketch, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yml"
    a.write_text(yaml.safe_dump(job("first")))
    b.write_text(yaml.safe_dump_all([job("second"), job("third")]))
    out = ok(ketch("apply", "-f", str(b), "-f", str(a), "-n", ns))
    assert out.splitlines() == [
        "pytorchjob/second created",
        "pytorchjob/third created",
        "pytorchjob/first created",
    ]
    assert _names(client, ns) == ["first", "second", "third"]
    stdin = ok(
        ketch(
            "apply", "-f", str(a), "--filename", "-", "-n", ns, stdin=yaml.safe_dump(job("fourth"))
        )
    )
    assert stdin.splitlines() == ["pytorchjob/first unchanged", "pytorchjob/fourth created"]


def test_a_directory_applies_its_manifests_sorted_and_recurses_only_with_R(
    ketch: Ketch, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    folder = tmp_path / "manifests"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.yaml").write_text(yaml.safe_dump(job("from-b")))
    (folder / "a.json").write_text(json.dumps(job("from-a"), indent="\t"))  # tabs: JSON, not YAML
    (folder / "c.yml").write_text(yaml.safe_dump_all([job("from-c1"), job("from-c2")]))
    (folder / "notes.txt").write_text("not a manifest")
    (folder / "README.md").write_text("# not a manifest either")
    (folder / "sub" / "d.yaml").write_text(yaml.safe_dump(job("from-sub")))
    flat = ok(ketch("apply", "-f", str(folder), "-n", ns)).splitlines()
    assert flat == [
        "pytorchjob/from-a created",
        "pytorchjob/from-b created",
        "pytorchjob/from-c1 created",
        "pytorchjob/from-c2 created",
    ]
    assert "from-sub" not in _names(client, ns)
    deep = ok(ketch("apply", "-R", "-f", str(folder), "-n", ns)).splitlines()
    assert deep[-1] == "pytorchjob/from-sub created" and len(deep) == 5
    assert ok(ketch("apply", "--recursive", "-f", str(folder), "-n", ns)).count("unchanged") == 5


def test_a_refused_document_is_named_and_the_others_still_apply(
    ketch: Ketch, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: one}}\n{SPEC}"
        "---\n"
        "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: two}\n"
        "---\n"
        f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: three}}\n{SPEC}"
    )
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(job("Not_Valid")))
    result = ketch("apply", "-f", str(mixed), "-f", str(other), "-n", ns)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == ["pytorchjob/one created", "pytorchjob/three created"]
    errors = result.stderr.splitlines()
    assert len(errors) == 2, errors
    assert (
        errors[0].startswith(f"error: {mixed} (document 2): ")
        and "unknown kind 'Gizmo'" in errors[0]
    )
    assert errors[1].startswith(f"error: {other} (document 1): ") and "metadata.name" in errors[1]
    assert _names(client, ns) == ["one", "three"]


def test_a_list_document_applies_its_items(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [job("l1"), {"kind": "PyTorchJob"}, job("l2")],
    }
    result = ketch("apply", "-f", "-", "-n", ns, stdin=json.dumps(listed))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["pytorchjob/l1 created", "pytorchjob/l2 created"]
    assert (
        "<stdin> (document 1, item 2)" in result.stderr
        and "apiVersion is required" in result.stderr
    )


def test_unreadable_input_applies_nothing_and_exits_2(
    ketch: Ketch, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(job("never")))
    bad(
        ketch("apply", "-f", str(good), "-f", str(tmp_path / "missing.yaml"), "-n", ns),
        2,
        "missing.yaml",
        "does not exist",
    )
    bad(
        ketch("apply", "-f", str(good), "-f", str(tmp_path / "nodir") + "/", "-n", ns),
        2,
        "nodir",
        "does not exist",
    )
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "deeper" / "x.yaml").write_text(yaml.safe_dump(job("deep")))
    bad(ketch("apply", "-f", str(empty), "-n", ns), 2, str(empty), "-R")
    broken = tmp_path / "broken.json"
    broken.write_text('{"apiVersion": "kubeflow.org/v1",\n "kind": }')
    bad(
        ketch("apply", "-f", str(good), "-f", str(broken), "-n", ns),
        2,
        "broken.json",
        "malformed JSON",
        "line 2",
    )
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("kind: [unclosed\n")
    bad(
        ketch("apply", "-f", str(good), "-f", str(malformed), "-n", ns),
        2,
        "malformed.yaml",
        "malformed YAML",
        "line",
    )
    blank = tmp_path / "blank.yaml"
    blank.write_text("---\n# nothing\n")
    bad(ketch("apply", "-f", str(blank), "-n", ns), 2, "no manifests", "blank.yaml")
    bad(ketch("apply", "-f", "-", "-f", "-", "-n", ns, stdin=""), 2, "stdin")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(f'*{p}' for _ in range(10))}]\n"
        for p, n in zip("abcd", "bcde", strict=True)
    )
    bad(ketch("apply", "-f", "-", "-n", ns, stdin=bomb), 2, "<stdin>", "aliases expand")
    bad(ketch("apply", "-f", str(good), "-n", "Bad_NS"), 2, "--namespace")
    assert _names(client, ns) == []
    missing_option = ketch("apply", "-n", ns)
    assert missing_option.returncode == 2 and "Traceback" not in missing_option.stderr


def test_a_single_refused_document_is_bad_input(ketch: Ketch, ns: str) -> None:
    """Nothing applied and only the input to blame: exit 2, one line naming the document."""
    line = bad(
        ketch(
            "apply",
            "-f",
            "-",
            "-n",
            ns,
            stdin="apiVersion: x/v1\nkind: Gizmo\nmetadata: {name: a}\n",
        ),
        2,
        "<stdin> (document 1)",
        "unknown kind 'Gizmo'",
    )
    assert line.startswith("error: <stdin> (document 1): ")


def test_cluster_scoped_kinds_ignore_the_namespace(ketch: Ketch, ns: str) -> None:
    """A ClusterTrainingRuntime has no namespace: -n and metadata.namespace do not
    change where it is, and it is found by name from any -n."""
    name = f"rt-{ns}"
    manifest = (
        "apiVersion: trainer.kubeflow.org/v1alpha1\nkind: ClusterTrainingRuntime\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\nspec: {{mlPolicy: {{numNodes: 1}}}}\n"
    )
    assert (
        ok(ketch("apply", "-f", "-", "-n", ns, stdin=manifest)).strip()
        == f"clustertrainingruntime/{name} created"
    )
    assert (
        ok(ketch("apply", "-f", "-", stdin=manifest)).strip()
        == f"clustertrainingruntime/{name} unchanged"
    )
    for where in (("-n", ns), ("-n", "elsewhere"), ()):
        assert (
            ok(ketch("get", "clustertrainingruntime", name, *where)).splitlines()[1].split()[0]
            == name
        )
    listed = ok(ketch("get", "clustertrainingruntimes", "-A")).splitlines()
    assert listed[0].split()[0] == "NAME" and any(line.split()[0] == name for line in listed[1:])
    assert ok(ketch("delete", "clustertrainingruntime", name, "-n", "elsewhere")).strip() == (
        f"clustertrainingruntime/{name} deleted"
    )


def test_metadata_of_the_wrong_type_is_named(ketch: Ketch, ns: str) -> None:
    for field, metadata in (("name", "{name: 123}"), ("namespace", "{name: x, namespace: [a]}")):
        manifest = f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {metadata}\n"
        bad(
            ketch("apply", "-f", "-", "-n", ns, stdin=manifest),
            2,
            "(document 1)",
            f"metadata.{field} must be a string",
        )


def test_n_does_not_silently_differ_from_the_manifests_namespace(
    ketch: Ketch, client: httpx.Client, ns: str
) -> None:
    pinned = {**job("pinned"), "metadata": {"name": "pinned", "namespace": ns}}
    line = bad(
        ketch("apply", "-f", "-", "-n", "other", stdin=yaml.safe_dump(pinned)), 2, "(document 1)"
    )
    assert f"metadata.namespace is '{ns}' but -n says 'other'" in line
    assert (
        ok(ketch("apply", "-f", "-", stdin=yaml.safe_dump(pinned))).strip()
        == "pytorchjob/pinned created"
    )
    assert (
        ok(ketch("apply", "-f", "-", "-n", ns, stdin=yaml.safe_dump(pinned))).strip()
        == "pytorchjob/pinned unchanged"
    )
    assert _names(client, ns) == ["pinned"]
