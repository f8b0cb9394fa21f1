"""The notebooks capability's parts that need no server: the manifest's checks, the
folders a notebook's volumes become, and the headers the proxy sends and returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.notebooks.proxy import response_headers, scrubbed, upstream_headers, upstream_path
from ketch.notebooks.running import Upstream
from ketch.notebooks.spec import (
    ServerType,
    main_container,
    parse_spec,
    server_type,
    validate,
)
from ketch.notebooks.workspace import plan, prepare
from tests.notebooks.helpers import example_notebook


def _resource(manifest: dict[str, Any]) -> Resource:
    return Resource.from_manifest(manifest)


def _refused(manifest: dict[str, Any]) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as refused:
        validate(_resource(manifest))
    return refused.value


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return found


def test_kubeflows_example_is_valid_and_runs_jupyter() -> None:
    manifest = example_notebook("nb", "team")
    validate(_resource(manifest))
    spec = parse_spec(manifest["spec"])
    index, container = main_container("nb", spec)
    assert index == 0 and container.name == "nb"
    assert server_type(_resource(manifest), container) is ServerType.JUPYTER


def test_refusals_name_the_field() -> None:
    manifest = example_notebook("nb", "team")
    _container(manifest)["volumeMounts"][0]["mountPath"] = "home/jovyan"
    assert _refused(manifest).field == "spec.template.spec.containers[0].volumeMounts[0].mountPath"

    manifest = example_notebook("nb", "team")
    _container(manifest)["args"] = ["--ServerApp.token=x"]
    refused = _refused(manifest)
    assert refused.field == "spec.template.spec.containers[0].args[0]"
    assert "set by Ketch" in str(refused)

    manifest = example_notebook("nb", "team")
    _container(manifest)["command"] = ["python", "train.py"]
    assert _refused(manifest).field == "spec.template.spec.containers[0].command"

    manifest = example_notebook("nb", "team")
    manifest["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = (
        "../up"
    )
    refused = _refused(manifest)
    assert refused.field == "spec.template.spec.volumes[0].persistentVolumeClaim.claimName"

    manifest = example_notebook("nb", "team")
    manifest["metadata"]["name"] = "Has.Dots"
    assert _refused(manifest).field == "metadata.name"


def test_a_jupyter_command_passes_its_options() -> None:
    manifest = example_notebook("nb", "team")
    _container(manifest)["command"] = ["jupyter", "lab", "--ServerApp.terminals_enabled=False"]
    validate(_resource(manifest))


def test_volumes_become_folders_that_outlive_the_notebook(tmp_path: Path) -> None:
    manifest = example_notebook("nb", "team")
    pod = manifest["spec"]["template"]["spec"]
    pod["volumes"] += [
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "settings"}},
    ]
    pod["containers"][0]["volumeMounts"] += [
        {"name": "data", "mountPath": "/home/jovyan/data"},
        {"name": "cache", "mountPath": "/scratch"},
        {"name": "conf", "mountPath": "/etc/settings"},
    ]
    spec = parse_spec(manifest["spec"])
    layout = plan(tmp_path, "team", "nb", spec, main_container("nb", spec)[1])
    workspace = tmp_path / "volumes" / "team" / "nb-workspace"
    assert layout.root == workspace
    assert layout.workdir == tmp_path / "notebooks" / "team" / "nb"
    assert [note for note in layout.notes if "'conf'" in note and "configMap" in note]
    assert prepare(layout) == []
    data = workspace / "data"
    assert data.is_symlink() and data.resolve() == tmp_path / "volumes" / "team" / "shared-data"
    scratch = workspace / "scratch"
    (scratch / "old").write_text("gone at the next start")
    (data / "kept").write_text("kept")
    assert prepare(layout) == []
    assert not (scratch / "old").exists() and (data / "kept").read_text() == "kept"


def test_headers_upstream_carry_the_token_not_ketchs_credentials() -> None:
    upstream = Upstream("127.0.0.1", 9999, "s3cret", "/notebook/team/nb/")
    raw = [
        (b"host", b"127.0.0.1:8808"),
        (b"origin", b"http://127.0.0.1:8808"),
        (b"authorization", b"Bearer ketch-token"),
        (b"cookie", b"ketch_session=abc; _xsrf=x1"),
        (b"cookie", b"username-127-0-0-1-8808=u"),
        (b"x-csrf-token", b"c"),
        (b"kubeflow-userid", b"alice@example.com"),
        (b"connection", b"keep-alive"),
        (b"x-xsrftoken", b"x1"),
    ]
    sent = upstream_headers(raw, upstream)
    assert sent == [
        ("host", "127.0.0.1:8808"),
        ("origin", "http://127.0.0.1:8808"),
        ("x-xsrftoken", "x1"),
        ("cookie", "_xsrf=x1; username-127-0-0-1-8808=u"),
        ("authorization", "token s3cret"),
    ]
    assert upstream_path("/notebook/team/nb/lab", "a=1", upstream) == "/notebook/team/nb/lab?a=1"
    rooted = Upstream("127.0.0.1", 9999, "", "/notebook/team/nb/", strip_prefix=True)
    assert upstream_path("/notebook/team/nb/x/y", "", rooted) == "/x/y"


def test_every_set_cookie_comes_back_on_its_own_line() -> None:
    upstream = Upstream("127.0.0.1", 9999, "s3cret", "/notebook/team/nb/")
    answer = httpx.Response(
        200,
        headers=[
            ("set-cookie", "_xsrf=1; Path=/notebook/team/nb/"),
            ("set-cookie", "username-x=2; Path=/notebook/team/nb/"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/html"),
        ],
    )
    returned = response_headers(answer, upstream)
    assert returned == [
        (b"set-cookie", b"_xsrf=1; Path=/notebook/team/nb/"),
        (b"set-cookie", b"username-x=2; Path=/notebook/team/nb/"),
        (b"content-type", b"text/html"),
    ]


def test_the_token_is_taken_out_of_a_page_even_across_chunks() -> None:
    import asyncio

    token = b"T0k3n-of-the-notebook"
    page = b'<script id="jupyter-config-data">{"token": "' + token + b'", "x": 1}</script>' * 3

    async def collect(size: int) -> bytes:
        async def chunks() -> Any:
            for start in range(0, len(page), size):
                yield page[start : start + size]

        return b"".join([part async for part in scrubbed(chunks(), token)])

    expected = page.replace(token, b"")
    assert b'"token": ""' in expected
    for size in (1, 2, 7, len(token) - 1, len(token), len(token) + 1, len(page)):
        assert asyncio.run(collect(size)) == expected, size
