"""The Jupyter web app API on a real ``ketch up`` with users, over HTTP: the form's
settings (Ketch's defaults with a field of the server's own file in place), a
Notebook made from the form as Kubeflow's web app makes it, its row and status in the
list, stop and start, delete, claims and PodDefaults, bad forms refused naming the
field, the namespace's count quota, and who may do what (a viewer lists but does not
create, another profile's owner gets 403, nobody signed out gets 401).

Alice's namespace has a compute quota no notebook fits in, so what the form makes
there never runs (it waits, ExceededQuota); one test makes a notebook elsewhere and sees
it Ready and answering through the proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ketch.core.backend.host import host_gpus
from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.notebooks import form, spawner
from ketch.tenancy.users import Directory
from tests.notebooks.helpers import path, requires_jupyterlab
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.tenancy.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    as_user,
    directory_of,
    two_owners_and_a_viewer,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)

API = "/jupyter/api"
ALICE_NS, BOB_NS, QUOTA_NS, RUN_NS = "wa-alice", "wa-bob", "wa-quota", "wa-run"
IMAGE = "ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-scipy:latest"
#: the server's own settings: CPU with another default and factor, the pull policy
#: fixed, and a toleration group to pick
SETTINGS = {
    "spawnerFormDefaults": {
        "cpu": {"value": "0.25", "limitFactor": "2"},
        "imagePullPolicy": {"value": "Always", "readOnly": True},
        "tolerationGroup": {
            "value": "",
            "options": [
                {
                    "groupKey": "small",
                    "displayName": "Small nodes",
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "small"},
                    ],
                }
            ],
        },
    }
}


def _profile(name: str, owner: str, hard: dict[str, str] | None = None) -> Resource:
    spec: dict[str, Any] = {"owner": {"kind": "User", "name": owner}}
    if hard:
        spec["resourceQuotaSpec"] = {"hard": hard}
    return Resource.from_manifest(
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Profile",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("ketch-jupyter-web-app")
    settings = home / "spawner.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS))
    env = {**SERVER_ENV, "KETCH_NOTEBOOK_SPAWNER_CONFIG": str(settings)}
    started = Server(home, extra_env=env).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    def reads(http: httpx.Client, namespace: str) -> bool:
        return http.get(f"{API}/namespaces/{namespace}/notebooks").status_code == 200

    made = two_owners_and_a_viewer(server, directory, (ALICE_NS, BOB_NS), reads)
    store = server.store()
    # nothing made in Alice's namespace runs: no notebook fits in a thousandth of a CPU
    store.apply(_profile(ALICE_NS, ALICE, {"requests.cpu": "1m"}))
    store.apply(_profile(QUOTA_NS, ALICE, {"count/notebooks.kubeflow.org": "1", "cpu": "1m"}))
    store.apply(_profile(RUN_NS, ALICE))
    with as_user(server, made[ALICE]) as alice:
        wait_for(lambda: reads(alice, QUOTA_NS) and reads(alice, RUN_NS), 20, 0.1, "roles")
    return made


@pytest.fixture(scope="module")
def alice(server: Server, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with as_user(server, tokens[ALICE]) as http:
        yield http


def notebooks(namespace: str, name: str | None = None) -> str:
    base = f"{API}/namespaces/{namespace}/notebooks"
    return f"{base}/{name}" if name else base


def ok(response: httpx.Response, user: str) -> dict[str, Any]:
    """The body of a success in the web app's envelope."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True and body["status"] == 200 and body["user"] == user, body
    return body


def refused(response: httpx.Response, status: int, field: str | None = None) -> str:
    """The message of a failure in the web app's envelope (naming ``field``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["status"] == status, body
    assert body["log"] == body["message"] and "Traceback" not in body["message"], body
    if field is not None:
        assert body.get("field") == field, body
        assert field in body["message"], body
    return str(body["message"])


def signed_out(response: httpx.Response) -> None:
    """The server's own 401 (before any route: nobody is signed in)."""
    assert response.status_code == 401, response.text
    assert "sign in" in response.json()["message"]


def unique(prefix: str = "nb") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def row_of(http: httpx.Client, namespace: str, name: str, user: str) -> dict[str, Any]:
    rows = ok(http.get(notebooks(namespace)), user)["notebooks"]
    return next(r for r in rows if r["name"] == name)


# -- settings, GPUs, storage classes ----------------------------------------------------


def test_the_settings_are_kubeflows_with_the_servers_own_fields(
    server: Server, tokens: dict[str, str]
) -> None:
    with as_user(server, tokens[CAROL]) as carol:
        config = ok(carol.get(f"{API}/config"), CAROL)["config"]
        assert config["image"]["value"] == IMAGE and IMAGE in config["image"]["options"]
        assert config["imageGroupOne"]["value"].endswith("/codeserver-python:latest")
        assert config["imageGroupTwo"]["value"].endswith("/rstudio-tidyverse:latest")
        assert config["cpu"] == SETTINGS["spawnerFormDefaults"]["cpu"]  # the server's file
        assert config["imagePullPolicy"] == {"value": "Always", "readOnly": True}
        assert config["memory"] == {"readOnly": False, "value": "1.0Gi", "limitFactor": "1.2"}
        workspace = config["workspaceVolume"]["value"]
        assert workspace["mount"] == "/home/jovyan"
        assert workspace["newPvc"]["metadata"]["name"] == "{notebook-name}-workspace"
        vendors = [v["limitsKey"] for v in config["gpus"]["value"]["vendors"]]
        assert "nvidia.com/gpu" in vendors and config["gpus"]["value"]["num"] == "none"
        assert config["shm"]["value"] is True and config["configurations"]["value"] == []
        gpus = ok(carol.get(f"{API}/gpus"), CAROL)["vendors"]
        assert gpus == (["nvidia.com/gpu"] if host_gpus() else [])
        default = ok(carol.get(f"{API}/storageclasses/default"), CAROL)
        assert default["defaultStorageClass"] == ""
    with as_user(server, None) as nobody:
        signed_out(nobody.get(f"{API}/config"))


def test_the_servers_file_replaces_whole_fields_and_a_bad_one_is_named(tmp_path: Path) -> None:
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(SETTINGS))
    settings = spawner.load({spawner.CONFIG_ENV: str(own)})
    assert settings.value("cpu") == "0.25" and settings.limit_factor("cpu") == 2
    assert settings.read_only("imagePullPolicy") and not settings.read_only("memory")
    assert settings.value("image") == IMAGE  # not in the file: Ketch's own
    assert spawner.load({}).limit_factor("memory") == Fraction(6, 5)
    broken = tmp_path / "broken.yaml"
    for text, field in (
        ("cpu: 1", spawner.ROOT),
        ("spawnerFormDefaults: {cpu: {value: '1', limitFactor: '0.5'}}", "cpu.limitFactor"),
        ("spawnerFormDefaults: {image: {value: x, options: [1]}}", "image.options"),
        ("spawnerFormDefaults: {tolerationGroup: {value: '', options: [{}]}}", "tolerationGroup"),
    ):
        broken.write_text(text)
        with pytest.raises(InvalidSpec) as refused_file:
            spawner.load({spawner.CONFIG_ENV: str(broken)})
        assert field in str(refused_file.value) and str(broken) in str(refused_file.value)
    with pytest.raises(InvalidSpec, match=spawner.CONFIG_ENV):
        spawner.load({spawner.CONFIG_ENV: str(tmp_path / "absent.yaml")})


def test_limits_keep_the_requests_unit() -> None:
    assert form.scaled("1.0Gi", Fraction(6, 5)) == "1.2Gi"
    assert form.scaled("0.5", Fraction(6, 5)) == "0.6"
    assert form.scaled("512Mi", Fraction(6, 5)) == "614.4Mi"
    assert form.scaled("100m", Fraction(6, 5)) == "120m"
    assert form.scaled("1e3", Fraction(2)) == "2000"
    assert form.scaled("0.001", Fraction(6, 5)) == "0.002"  # rounded up


# -- the form ------------------------------------------------------------------------


def test_a_form_makes_the_notebook_kubeflows_web_app_makes(alice: httpx.Client) -> None:
    name = unique()
    form = {
        "name": name,
        "image": IMAGE,
        "cpu": "0.5",
        "memory": "2Gi",
        "gpus": {"num": "none"},
        "configurations": ["access-ml-pipeline"],
        "tolerationGroup": "small",
        "datavols": [
            {
                "mount": "/home/jovyan/data",
                "existingSource": {"persistentVolumeClaim": {"claimName": "shared-data"}},
            }
        ],
    }
    made = ok(alice.post(notebooks(ALICE_NS), json=form), ALICE)
    assert made["notebook"]["name"] == name and made["message"]
    stored = alice.get(path(ALICE_NS, name)).json()  # the resource API's Notebook
    assert stored["metadata"]["labels"] == {"app": name, "access-ml-pipeline": "true"}
    annotations = stored["metadata"]["annotations"]
    assert annotations["notebooks.kubeflow.org/server-type"] == "jupyter"
    assert annotations["notebooks.kubeflow.org/creator"] == ALICE
    template = stored["spec"]["template"]
    assert template["metadata"]["labels"] == {"access-ml-pipeline": "true"}
    pod = template["spec"]
    assert pod["serviceAccountName"] == "default-editor"
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "small"}]
    (container,) = pod["containers"]
    assert container["name"] == name and container["image"] == IMAGE
    assert container["imagePullPolicy"] == "Always"  # read-only on this server
    assert container["resources"] == {
        "requests": {"cpu": "0.5", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2.4Gi"},  # factors 2 and 1.2
    }
    assert container["volumeMounts"] == [
        {"name": f"{name}-workspace", "mountPath": "/home/jovyan"},
        {"name": "shared-data", "mountPath": "/home/jovyan/data"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    assert pod["volumes"] == [
        {"name": f"{name}-workspace", "persistentVolumeClaim": {"claimName": f"{name}-workspace"}},
        {"name": "shared-data", "persistentVolumeClaim": {"claimName": "shared-data"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]

    # its row: Kubeflow's fields, and why it waits (the namespace's quota)
    def blocked() -> dict[str, Any] | None:
        row = row_of(alice, ALICE_NS, name, ALICE)
        return row if row["status"]["message"].startswith("ExceededQuota") else None

    row = wait_for(blocked, 30, 0.2, "the notebook waiting for the quota")
    assert row["status"]["phase"] == "warning"
    assert row["shortImage"] == "jupyter-scipy:latest" and row["serverType"] == "jupyter"
    assert (row["cpu"], row["memory"]) == ("0.5", "2Gi")
    assert row["gpus"] == {"count": 0, "message": ""}
    assert row["volumes"] == [f"{name}-workspace", "shared-data", "dshm"]
    assert row["url"] == f"/notebook/{ALICE_NS}/{name}/" and row["age"]
    one = ok(alice.get(notebooks(ALICE_NS, name)), ALICE)["notebook"]
    assert one["processed_status"] == row["status"] and one["spec"] == stored["spec"]
    claims = {
        c["name"]: c for c in ok(alice.get(f"{API}/namespaces/{ALICE_NS}/pvcs"), ALICE)["pvcs"]
    }
    assert claims[f"{name}-workspace"]["notebooks"] == [name]
    assert claims["shared-data"]["notebooks"] == [name]

    # made again: the name is taken; a new claim of a name the namespace has: 409
    refused(alice.post(notebooks(ALICE_NS), json=form), 409)
    again = {
        "name": unique(),
        "workspace": {
            "mount": "/home/jovyan",
            "newPvc": {"metadata": {"name": f"{name}-workspace"}},
        },
    }
    refused(alice.post(notebooks(ALICE_NS), json=again), 409, "workspace.newPvc.metadata.name")


def test_a_notebook_is_stopped_started_and_deleted(alice: httpx.Client) -> None:
    name = unique()
    ok(alice.post(notebooks(ALICE_NS), json={"name": name, "workspace": None}), ALICE)
    stored = alice.get(path(ALICE_NS, name)).json()
    assert [v["name"] for v in stored["spec"]["template"]["spec"]["volumes"]] == ["dshm"]
    assert stored["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "0.25", "memory": "1.0Gi"},  # the settings' defaults
        "limits": {"cpu": "0.5", "memory": "1.2Gi"},
    }

    stopped = ok(alice.patch(notebooks(ALICE_NS, name), json={"stopped": True}), ALICE)
    assert stopped["notebook"]["status"]["phase"] == "stopped"
    annotations = alice.get(path(ALICE_NS, name)).json()["metadata"]["annotations"]
    assert annotations["kubeflow-resource-stopped"].endswith("Z")
    assert row_of(alice, ALICE_NS, name, ALICE)["status"]["phase"] == "stopped"
    refused(alice.patch(notebooks(ALICE_NS, name), json={"stopped": True}), 409)

    ok(alice.patch(notebooks(ALICE_NS, name), json={"stopped": False}), ALICE)
    annotations = alice.get(path(ALICE_NS, name)).json()["metadata"]["annotations"]
    assert "kubeflow-resource-stopped" not in annotations
    assert row_of(alice, ALICE_NS, name, ALICE)["status"]["phase"] != "stopped"

    deleted = ok(alice.delete(notebooks(ALICE_NS, name)), ALICE)
    assert name in deleted["message"]
    assert alice.get(path(ALICE_NS, name)).status_code == 404
    refused(alice.get(notebooks(ALICE_NS, name)), 404)
    refused(alice.delete(notebooks(ALICE_NS, name)), 404)
    refused(alice.patch(notebooks(ALICE_NS, name), json={"stopped": True}), 404)


BAD_FORMS: list[tuple[dict[str, Any], int, str]] = [
    ({"name": None}, 400, "name"),
    ({"name": "Not_A_Name"}, 400, "name"),
    ({"cpu": "lots"}, 400, "cpu"),
    ({"cpu": "1", "cpuLimit": "0.5"}, 400, "cpuLimit"),
    ({"memory": "0"}, 400, "memory"),
    ({"imagePullPolicy": "Never"}, 400, "imagePullPolicy"),  # read-only here
    ({"serverType": "emacs"}, 400, "serverType"),
    ({"image": ""}, 400, "image"),
    ({"gpus": {"num": "two", "vendor": "nvidia.com/gpu"}}, 400, "gpus.num"),
    ({"gpus": {"num": "1", "vendor": "acme.com/gpu"}}, 400, "gpus.vendor"),
    (
        {"workspace": {"mount": "home", "newPvc": {"metadata": {"name": "w"}}}},
        400,
        "workspace.mount",
    ),
    ({"datavols": [{"mount": "/data"}]}, 400, "datavols[0]"),
    (
        {"datavols": [{"mount": "/data", "newPvc": {"metadata": {"name": "Bad Claim"}}}]},
        400,
        "datavols[0].newPvc.metadata.name",
    ),
    ({"configurations": ["not a label!"]}, 400, "configurations[0]"),
    ({"tolerationGroup": "huge"}, 400, "tolerationGroup"),
    ({"shm": "yes"}, 400, "shm"),
    # a claim named like the shared memory's volume: Ketch's checks of the Notebook
    (
        {
            "datavols": [
                {
                    "mount": "/data",
                    "existingSource": {"persistentVolumeClaim": {"claimName": "dshm"}},
                }
            ]
        },
        422,
        "spec.template.spec.volumes[2].name",
    ),
]


def test_bad_forms_are_refused_naming_the_field(
    server: Server, tokens: dict[str, str], alice: httpx.Client
) -> None:
    names = []
    for fields, status, field in BAD_FORMS:
        name = unique("bad")
        names.append(name)
        body = {"name": name, **fields}
        refused(alice.post(notebooks(ALICE_NS), json=body), status, field)
    # bodies: JSON objects only
    refused(
        alice.post(
            notebooks(ALICE_NS), content=b"[1]", headers={"Content-Type": "application/json"}
        ),
        400,
        "body",
    )
    refused(
        alice.post(notebooks(ALICE_NS), content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "body",
    )
    yaml_body = alice.post(
        notebooks(ALICE_NS), content=b"name: x", headers={"Content-Type": "application/yaml"}
    )
    assert "application/json" in refused(yaml_body, 415)
    text = alice.post(
        notebooks(ALICE_NS), content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415  # the server's guard, before any route
    target = notebooks(ALICE_NS, "absent")
    refused(alice.patch(target, json={}), 400, "stopped")
    refused(alice.patch(target, json={"stopped": "yes"}), 400, "stopped")
    with as_user(server, tokens[ADMIN]) as admin:
        refused(admin.get(notebooks("Not_A_Namespace")), 400, "namespace")
    listed = {r["name"] for r in ok(alice.get(notebooks(ALICE_NS)), ALICE)["notebooks"]}
    assert not listed & set(names)


# -- access, quotas, PodDefaults -------------------------------------------------------


def test_roles_decide_who_lists_and_changes_notebooks(
    server: Server, tokens: dict[str, str], alice: httpx.Client
) -> None:
    name = unique()
    ok(alice.post(notebooks(ALICE_NS), json={"name": name, "workspace": None}), ALICE)
    with as_user(server, tokens[CAROL]) as carol:  # views Alice's profile
        assert name in {r["name"] for r in ok(carol.get(notebooks(ALICE_NS)), CAROL)["notebooks"]}
        ok(carol.get(notebooks(ALICE_NS, name)), CAROL)
        ok(carol.get(f"{API}/namespaces/{ALICE_NS}/pvcs"), CAROL)
        message = refused(carol.post(notebooks(ALICE_NS), json={"name": unique()}), 403)
        assert 'cannot create resource "notebooks"' in message
        refused(carol.patch(notebooks(ALICE_NS, name), json={"stopped": True}), 403)
        refused(carol.delete(notebooks(ALICE_NS, name)), 403)
    with as_user(server, tokens[BOB]) as bob:  # another profile's owner
        for url in (
            notebooks(ALICE_NS),
            notebooks(ALICE_NS, name),
            f"{API}/namespaces/{ALICE_NS}/pvcs",
            f"{API}/namespaces/{ALICE_NS}/poddefaults",
        ):
            refused(bob.get(url), 403)
        refused(bob.post(notebooks(ALICE_NS), json={"name": unique()}), 403)
        refused(bob.delete(notebooks(ALICE_NS, name)), 403)
        ok(bob.get(notebooks(BOB_NS)), BOB)
    with as_user(server, None) as nobody:
        signed_out(nobody.get(notebooks(ALICE_NS)))
        signed_out(nobody.post(notebooks(ALICE_NS), json={"name": unique()}))
    # a page of another site cannot make one, whoever's token it holds
    evil, page = {"Origin": "https://evil.example"}, unique()
    assert alice.post(notebooks(ALICE_NS), json={"name": page}, headers=evil).status_code == 403
    assert alice.get(path(ALICE_NS, page)).status_code == 404


def test_the_namespaces_count_quota_holds(alice: httpx.Client) -> None:
    first, second = unique(), unique()
    ok(alice.post(notebooks(QUOTA_NS), json={"name": first, "workspace": None}), ALICE)
    message = refused(
        alice.post(notebooks(QUOTA_NS), json={"name": second, "workspace": None}), 403
    )
    assert "exceeded quota" in message and "count/notebooks.kubeflow.org" in message
    assert alice.get(path(QUOTA_NS, second)).status_code == 404


def test_poddefaults_are_listed_with_their_label(server: Server, tokens: dict[str, str]) -> None:
    server.store().apply(
        Resource.from_manifest(
            {
                "apiVersion": "kubeflow.org/v1alpha1",
                "kind": "PodDefault",
                "metadata": {"name": "access-ml-pipeline", "namespace": BOB_NS},
                "spec": {
                    "desc": "Allow access to Kubeflow Pipelines",
                    "selector": {"matchLabels": {"access-ml-pipeline": "true"}},
                    "env": [{"name": "KF_PIPELINES_SA_TOKEN_PATH", "value": "/var/run/token"}],
                },
            }
        )
    )
    with as_user(server, tokens[BOB]) as bob:
        (found,) = ok(bob.get(f"{API}/namespaces/{BOB_NS}/poddefaults"), BOB)["poddefaults"]
        assert found["label"] == "access-ml-pipeline"
        assert found["desc"] == "Allow access to Kubeflow Pipelines"
        assert found["metadata"]["name"] == "access-ml-pipeline"
    with as_user(server, tokens[CAROL]) as carol:
        assert ok(carol.get(f"{API}/namespaces/{ALICE_NS}/poddefaults"), CAROL)["poddefaults"] == []


# -- the one that runs ---------------------------------------------------------------


@requires_jupyterlab
def test_a_notebook_from_the_form_becomes_ready_behind_the_proxy(alice: httpx.Client) -> None:
    name = unique("lab")
    form = {"name": name, "cpu": "0.1", "memory": "0.5Gi"}
    ok(alice.post(notebooks(RUN_NS), json=form), ALICE)

    def ready() -> dict[str, Any] | None:
        row = row_of(alice, RUN_NS, name, ALICE)
        return row if row["status"]["phase"] == "ready" else None

    row = wait_for(ready, 120, 0.2, "the notebook ready")
    assert row["status"]["message"] == "Running"
    answered = alice.get(f"{row['url']}api/status")
    assert answered.status_code == 200 and "kernels" in answered.json()
    ok(alice.patch(notebooks(RUN_NS, name), json={"stopped": True}), ALICE)
    wait_for(
        lambda: row_of(alice, RUN_NS, name, ALICE)["status"]["phase"] == "stopped",
        60,
        0.2,
        "the notebook stopped",
    )
    assert alice.get(f"{row['url']}api/status").status_code == 503
    ok(alice.delete(notebooks(RUN_NS, name)), ALICE)
