"""``ketch kubeconfig`` as a real subprocess against a real server: the kubeconfig it
prints and writes, what kubectl and the kubernetes client make of it, and merging
into an existing kubeconfig without disturbing the rest of it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli.helpers import bad, ok
from tests.server.helpers import Server, base_env, free_port, ketch_command

# One server is enough (not one per database): the command only asks whether it is there.
sqlite = pytest.mark.parametrize("server", ["sqlite"], indirect=True)

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

EXISTING = """\
# my clusters: this comment, the layout and the other entries stay as they are
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: QUJD
    server: https://prod.example:6443   # production
  name: prod
- cluster: {server: 'http://old.example:1'}
  name: ketch
contexts:
  - context:
      cluster: prod
      user: admin
    name: prod
current-context: prod   # keep me
kind: Config
preferences: {}
users:
- name: admin
  user:
    token: not-a-real-token
"""


def run(
    server: Server | None, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``ketch ARGS`` with HOME in ``tmp_path`` (never the real ~/.kube) and ``env``."""
    environment = base_env(tmp_path / "ketch-home")
    environment.pop("KUBECONFIG", None)
    environment["HOME"] = str(tmp_path / "home")
    if server is not None:
        environment["KETCH_URL"] = server.url
    environment.update(env)
    return subprocess.run(
        [*ketch_command(), "kubeconfig", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=tmp_path,
    )


def kubectl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(config.parent)},
    )


def entry(document: dict, section: str, name: str) -> dict:
    [found] = [item for item in document[section] if item["name"] == name]
    return found


@sqlite
def test_prints_a_kubeconfig_for_the_running_server(server: Server, tmp_path: Path) -> None:
    document = yaml.safe_load(ok(run(server, tmp_path)))
    assert document["apiVersion"] == "v1" and document["kind"] == "Config"
    assert document["clusters"] == [{"cluster": {"server": server.url}, "name": "ketch"}]
    # No credentials yet, but the user entry is there for a token to be added to.
    assert document["users"] == [{"name": "ketch", "user": {}}]
    assert document["contexts"] == [
        {"context": {"cluster": "ketch", "namespace": "default", "user": "ketch"}, "name": "ketch"}
    ]
    assert document["current-context"] == "ketch"


@sqlite
def test_context_and_namespace_options(server: Server, tmp_path: Path) -> None:
    document = yaml.safe_load(ok(run(server, tmp_path, "--context", "laptop", "-n", "team-a")))
    assert [c["name"] for c in document["clusters"]] == ["laptop"]
    assert [u["name"] for u in document["users"]] == ["laptop"]
    assert entry(document, "contexts", "laptop")["context"] == {
        "cluster": "laptop",
        "namespace": "team-a",
        "user": "laptop",
    }
    assert document["current-context"] == "laptop"


@sqlite
def test_output_writes_a_private_file(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "out" / "kubeconfig"
    message = ok(run(server, tmp_path, "--output", str(target)))
    assert str(target) in message and server.url in message
    assert target.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(target.read_text()) == yaml.safe_load(ok(run(server, tmp_path)))
    # Written again over a file others could read: still 0600.
    target.chmod(0o644)
    ok(run(server, tmp_path, "--output", str(target)))
    assert target.stat().st_mode & 0o777 == 0o600


@sqlite
@needs_kubectl
def test_kubectl_reads_it_and_reaches_the_server(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "kubeconfig"
    ok(run(server, tmp_path, "--output", str(target)))
    view = kubectl(target, "--context", "ketch", "config", "view", "-o", "json")
    assert view.returncode == 0, view.stderr
    shown = json.loads(view.stdout)
    assert entry(shown, "clusters", "ketch")["cluster"]["server"] == server.url
    assert shown["current-context"] == "ketch"
    groups = kubectl(target, "--context", "ketch", "get", "--raw", "/apis")
    assert groups.returncode == 0, groups.stderr
    names = [group["name"] for group in json.loads(groups.stdout)["groups"]]
    assert "kubeflow.org" in names and "serving.kserve.io" in names


@sqlite
def test_the_kubernetes_client_loads_it(server: Server, tmp_path: Path, ns: str) -> None:
    pytest.importorskip("kubernetes", reason="the kubernetes client is not installed here")
    from kubernetes import client, config

    target = tmp_path / "kubeconfig"
    ok(run(server, tmp_path, "--output", str(target), "-n", ns))
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(target), context="ketch", client_configuration=configuration
    )
    assert configuration.host == server.url
    _, active = config.list_kube_config_contexts(config_file=str(target))
    assert active["context"]["namespace"] == ns
    with client.ApiClient(configuration) as api:
        listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "kubeflow.org", "v1", ns, "pytorchjobs"
        )
    assert listed["items"] == []


@sqlite
def test_merge_replaces_its_entries_and_keeps_the_rest(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "kube" / "config"
    config.parent.mkdir()
    config.write_text(EXISTING)
    config.chmod(0o640)
    message = ok(run(server, tmp_path, "--merge", KUBECONFIG=str(config)))
    assert str(config) in message and "Replaced" in message
    assert "current context is still 'prod'" in message
    expected = EXISTING.replace(
        "- cluster: {server: 'http://old.example:1'}\n  name: ketch\n",
        f"- cluster:\n    server: {server.url}\n  name: ketch\n",
    ).replace(
        "    name: prod\ncurrent-context",
        "    name: prod\n  - context:\n      cluster: ketch\n      namespace: default\n"
        "      user: ketch\n    name: ketch\ncurrent-context",
    )
    expected += "- name: ketch\n  user: {}\n"
    assert config.read_text() == expected  # byte for byte: comments and layout kept
    assert config.stat().st_mode & 0o777 == 0o640  # its mode kept

    # Again, with --use: the entries are the same, the current context changes alone.
    message = ok(run(server, tmp_path, "--merge", "--use", KUBECONFIG=str(config)))
    assert "current context is now 'ketch'" in message
    assert config.read_text() == expected.replace(
        "current-context: prod   # keep me", "current-context: ketch   # keep me"
    )


@sqlite
def test_merge_creates_a_missing_file(server: Server, tmp_path: Path) -> None:
    message = ok(run(server, tmp_path, "--merge"))  # no KUBECONFIG: ~/.kube/config
    config = tmp_path / "home" / ".kube" / "config"
    assert f"Created {config}" in message
    assert config.stat().st_mode & 0o777 == 0o600
    document = yaml.safe_load(config.read_text())
    assert entry(document, "clusters", "ketch")["cluster"]["server"] == server.url
    assert "current-context" not in document  # only --use sets it
    if KUBECTL is not None:
        listed = kubectl(config, "--context", "ketch", "get", "--raw", "/apis")
        assert listed.returncode == 0, listed.stderr


@sqlite
def test_merge_into_the_kubeconfig_list(server: Server, tmp_path: Path) -> None:
    first, second = tmp_path / "missing", tmp_path / "second"
    second.write_text(EXISTING)
    listed = f"{first}:{second}"
    message = ok(run(server, tmp_path, "--merge", "--context", "ketch-2", KUBECONFIG=listed))
    assert str(second) in message and "Added" in message  # the first file that exists
    assert not first.exists()
    document = yaml.safe_load(second.read_text())
    assert [c["name"] for c in document["clusters"]] == ["prod", "ketch", "ketch-2"]
    assert document["current-context"] == "prod"


@sqlite
def test_a_layout_it_cannot_edit_is_written_anew(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "{apiVersion: v1, kind: Config, clusters: [{name: a, cluster: {server: 'https://a'}}],"
        " contexts: [{name: a, context: {cluster: a, user: a}}], users: [{name: a, user: {}}],"
        " current-context: a}\n"
    )
    message = ok(run(server, tmp_path, "--merge", KUBECONFIG=str(config)))
    assert "written anew" in message
    document = yaml.safe_load(config.read_text())
    assert [c["name"] for c in document["clusters"]] == ["a", "ketch"]
    assert [c["name"] for c in document["contexts"]] == ["a", "ketch"]
    assert [u["name"] for u in document["users"]] == ["a", "ketch"]
    assert document["current-context"] == "a"


def test_no_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    bad(run(None, tmp_path, KETCH_URL=url), 1, f"no Ketch server at {url}", "ketch up")
    config = tmp_path / "config"
    bad(run(None, tmp_path, "--merge", KETCH_URL=url, KUBECONFIG=str(config)), 1, "ketch up")
    assert not config.exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--context", "a b"], ["--context", "'a b'"]),
        (["--namespace", "Team_A"], ["--namespace", "RFC 1123"]),
        (["--use"], ["--use", "--merge"]),
        (["--merge", "--output", "x"], ["--output", "--merge"]),
    ],
)
@sqlite
def test_bad_options(server: Server, tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    bad(run(server, tmp_path, *args), 2, *fragments)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("clusters: [\n", "is not valid YAML: line"),
        ("- just\n- a list\n", "not a kubeconfig"),
        ("kind: Pod\n", "its kind is 'Pod'"),
        ("clusters: {a: 1}\n", "clusters is a dict"),
    ],
)
@sqlite
def test_merge_refuses_a_file_that_is_not_a_kubeconfig(
    server: Server, tmp_path: Path, text: str, fragment: str
) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    bad(run(server, tmp_path, "--merge", KUBECONFIG=str(config)), 2, str(config), fragment)
    assert config.read_text() == text
