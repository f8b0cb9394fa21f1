"""The single-user server's bounds: what a web page, a client or a second server can
and cannot make it do."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import Server, assert_error, base_env, ketch_command

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def batch_job(name: str, marker: Path) -> dict[str, Any]:
    """A batch Job whose only effect is to create ``marker``."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "busybox", "command": ["touch", str(marker)]}
                    ],
                }
            }
        },
    }


# -- Content-Type, Origin and Host --------------------------------------------------


def test_writes_need_a_json_or_yaml_body(client: httpx.Client, ns: str) -> None:
    body = yaml.safe_dump(job("typed"))
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        response = client.post(jobs_path(ns), content=body, headers={"content-type": content_type})
        assert_error(response, 415, content_type.split(";")[0], "application/json")
    assert_error(client.post(jobs_path(ns), content=body, headers={"content-type": ""}), 415)
    assert client.get(jobs_path(ns)).json()["items"] == []
    created = client.post(jobs_path(ns), content=body, headers={"content-type": "application/yaml"})
    assert created.status_code == 201, created.text
    patched = client.patch(
        jobs_path(ns, "typed"),
        content=b'{"metadata": {"labels": {"a": "b"}}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    # KFP's upload takes multipart/form-data, and only there
    upload = client.post(
        "/apis/v2beta1/pipelines/upload",
        files={"uploadfile": ("p.yaml", b"not: a pipeline\n", "application/yaml")},
    )
    assert upload.status_code != 415, upload.text


def test_cross_origin_writes_are_refused(server: Server, client: httpx.Client, ns: str) -> None:
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        response = client.post(jobs_path(ns), json=job("x"), headers={"origin": origin})
        assert_error(response, 403, "cross-origin")
    site = client.post(jobs_path(ns), json=job("x"), headers={"sec-fetch-site": "cross-site"})
    assert_error(site, 403, "cross-site")
    assert client.get(jobs_path(ns)).json()["items"] == []
    # reads carry no risk: a cross-origin GET still answers (the browser keeps the body)
    assert client.get(jobs_path(ns), headers={"origin": "http://evil.example"}).status_code == 200
    same = client.post(jobs_path(ns), json=job("x"), headers={"origin": server.url})
    assert same.status_code == 201, same.text


def test_other_host_names_are_refused(server: Server, ns: str) -> None:
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1
    with httpx.Client(base_url=server.url, headers={"host": "evil.example"}) as rebound:
        assert_error(rebound.get(jobs_path(ns)), 403, "evil.example")
    with httpx.Client(base_url=server.url, headers={"host": f"localhost:{server.port}"}) as local:
        assert local.get(jobs_path(ns)).status_code == 200


def test_a_web_page_cannot_create_work(
    browser: BrowserThread,  # noqa: F811
    server: Server,
    client: httpx.Client,
    ns: str,
    tmp_path: Path,
) -> None:
    """A real page on another origin tries every request a browser sends without a
    preflight; nothing is created and nothing runs. The same request from a page of
    Ketch's own origin works."""
    marker = tmp_path / "ran"
    target = f"{server.url}{jobs_path(ns)}"
    page_html = f"""<!doctype html><html><body><script>
    const target = {target!r};
    const body = name => JSON.stringify(Object.assign({{}}, {json.dumps(batch_job("NAME", marker))}, {{metadata: {{name}}}}));
    (async () => {{
      const tries = [
        fetch(target, {{method: "POST", mode: "no-cors", body: body("plain")}}),
        fetch(target, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: body("typed")}}),
        fetch(target, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "application/x-www-form-urlencoded"}}, body: body("form")}}),
        fetch(target, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: body("cors")}}).catch(e => e),
      ];
      await Promise.allSettled(tries);
      document.title = "done";
    }})();
    </script></body></html>"""
    page_bytes = page_html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page_bytes)))
            self.end_headers()
            self.wfile.write(page_bytes)

        def log_message(self, *_args: object) -> None:
            pass

    async def visit_evil(chromium: Any) -> None:
        page = await chromium.new_page()
        try:
            await page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            await page.wait_for_function("document.title === 'done'", timeout=30_000)
        finally:
            await page.close()

    with socketserver.TCPServer(("127.0.0.1", 0), Page) as evil:
        thread = threading.Thread(target=evil.serve_forever, daemon=True)
        thread.start()
        try:
            browser.run(visit_evil)
        finally:
            evil.shutdown()
    assert client.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"] == []
    time.sleep(0.5)
    assert not marker.exists()

    # The server's own origin (where a dashboard lives) may write.
    async def write_from_own_origin(chromium: Any) -> int:
        page = await chromium.new_page()
        try:
            await page.goto(f"{server.url}/docs")
            return int(
                await page.evaluate(
                    """async ([target, manifest]) => (await fetch(target, {method: "POST",
                        headers: {"Content-Type": "application/json"}, body: manifest})).status""",
                    [f"{server.url}{jobs_path(ns)}", json.dumps(job("same-origin"))],
                )
            )
        finally:
            await page.close()

    status = browser.run(write_from_own_origin)
    assert status == 201
    assert client.get(jobs_path(ns, "same-origin")).status_code == 200


# -- bounded parsing -------------------------------------------------------------------


def test_alias_bombs_and_deep_nesting_are_refused(client: httpx.Client, ns: str) -> None:
    headers = {"content-type": "application/yaml"}
    manifest = (
        yaml.safe_dump(job("bomb"))
        + "  bomb:\n"
        + "".join("    " + line + "\n" for line in BOMB.splitlines())
    )
    started = time.monotonic()
    response = client.post(jobs_path(ns), content=BOMB.encode(), headers=headers)
    assert_error(response, 400, "aliases expand")
    in_spec = client.post(jobs_path(ns), content=manifest.encode(), headers=headers)
    assert_error(in_spec, 400, "aliases expand")
    deep = client.post(jobs_path(ns), content=b"[" * 50_000 + b"]" * 50_000, headers=headers)
    assert_error(deep, 400, "deeper than")
    deep_json = client.post(
        jobs_path(ns),
        content=b"[" * 50_000 + b"]" * 50_000,
        headers={"content-type": "application/json"},
    )
    assert_error(deep_json, 400, "deeper than")
    recursive = client.post(jobs_path(ns), content=b"&a [*a]", headers=headers)
    assert_error(recursive, 400, "refers to itself")
    assert time.monotonic() - started < 60  # bounded: not minutes of expansion
    assert client.get(jobs_path(ns)).json()["items"] == []
    # anchors used as people use them still work
    fine = (
        yaml.safe_dump(job("anchored"))
        .replace("metadata:", "x-common: &common {team: ml}\nmetadata:")
        .replace("labels: {}", "labels: *common")
    )
    created = client.post(jobs_path(ns), content=fine.encode(), headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["metadata"]["labels"] == {"team": "ml"}


# -- paths the server opens ------------------------------------------------------------


def test_status_writes_cannot_make_the_server_read_files(
    server: Server, client: httpx.Client, ns: str
) -> None:
    client.post(runtimes_path(ns), json=runtime("peek"))  # no controller writes its status
    injected = {"logPaths": {"master-0": "/etc/passwd", "env": "/proc/self/environ"}, "note": "x"}
    written = client.put(runtimes_path(ns, "peek") + "/status", json={"status": injected})
    assert written.status_code == 200, written.text
    assert "logPaths" not in written.json()["status"] and written.json()["status"]["note"] == "x"
    log = client.get(runtimes_path(ns, "peek") + "/log")
    assert "root:" not in log.text
    # A path the store holds (as a controller would write it) is still confined: no
    # file outside Ketch's log folders, not through '..', not through a symlink.
    folder = server.home / "logs" / "test" / ns
    folder.mkdir(parents=True)
    (folder / "link.log").symlink_to("/etc/passwd")
    (folder / "real.log").write_text("real line\n")
    store = server.store()
    paths = {
        "a": "/etc/passwd",
        "b": str(folder / ".." / ".." / ".." / ".." / ".." / "etc" / "passwd"),
        "c": str(folder / "link.log"),
        "d": str(server.home / "ketch.db"),
        "e": str(folder / "real.log"),
    }
    store.update_status("TrainingRuntime", ns, "peek", {"logPaths": paths})
    for replica in "abcd":
        text = client.get(runtimes_path(ns, "peek") + "/log", params={"replica": replica}).text
        assert "root:" not in text and "SQLite" not in text, (replica, text[:200])
        assert "not served" in text
    assert (
        client.get(runtimes_path(ns, "peek") + "/log", params={"replica": "e"}).text
        == "real line\n"
    )
    # and a client's status write leaves the server's logPaths alone
    client.put(
        runtimes_path(ns, "peek") + "/status", json={"status": {"logPaths": {"e": "/etc/passwd"}}}
    )
    assert client.get(runtimes_path(ns, "peek")).json()["status"]["logPaths"] == paths


# -- one control plane per store -------------------------------------------------------


def _up(
    home: Path, database_url: str | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ketch_command(), "up", "--port", "0", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(home, database_url),
        stdin=subprocess.DEVNULL,
    )


def test_a_second_server_on_the_same_store_refuses_to_start(server: Server, tmp_path: Path) -> None:
    assert server.process is not None
    second = _up(server.home, server.database_url)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another Ketch server already runs" in second.stderr
    assert f"pid {server.process.pid}" in second.stderr or "ketch up" in second.stderr
    assert "Traceback" not in second.stderr


def test_the_lock_goes_with_a_killed_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Server(home).start()
    assert first.process is not None
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    again = Server(home).start()  # at once: the kernel released the lock
    try:
        with again.client() as http:
            assert http.get("/readyz").status_code == 200
    finally:
        assert again.stop() == 0


def test_a_non_loopback_host_with_users_shows_the_bound_address(tmp_path: Path) -> None:
    # Without users it would refuse to start (tests/cli/test_tls.py); with one it serves,
    # and says that kubectl sends no token over plain HTTP.
    from ketch.core.store.db import Database
    from ketch.tenancy.tables import MIGRATIONS
    from ketch.tenancy.users import Directory

    home = tmp_path / "home"
    home.mkdir()
    with Database(f"sqlite:///{home / 'ketch.db'}") as database:
        database.migrate([MIGRATIONS])
        Directory(database).add("admin@example.com", admin=True)
    server = Server(home, args=("--host", "0.0.0.0")).start()
    try:
        assert server.url.startswith("http://0.0.0.0:")
        assert "TLS" in server.output() or "tls" in server.output()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/v1/namespaces").status_code == 401
    finally:
        assert server.stop() == 0


# -- events ------------------------------------------------------------------------------


def test_repeated_events_are_counted(server: Server, client: httpx.Client, ns: str) -> None:
    client.post(jobs_path(ns), json=job("noisy"))
    store = server.store()
    for _ in range(3):
        store.record_event(
            "PyTorchJob", ns, "noisy", reason="BackOff", message="restarting", type="Warning"
        )
    store.record_event("PyTorchJob", ns, "noisy", reason="Other", message="once")
    items = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": "involvedObject.name=noisy"},
    ).json()["items"]
    ours = [(e["reason"], e["count"]) for e in items if e["reason"] in ("BackOff", "Other")]
    assert ours == [("BackOff", 3), ("Other", 1)]
    backoff = items[0]
    assert backoff["lastTimestamp"] >= backoff["firstTimestamp"]
