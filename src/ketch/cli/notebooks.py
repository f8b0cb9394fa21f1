"""``ketch notebooks``: Kubeflow's notebooks from the command line (create, list, open,
stop, start, delete), through the server's Jupyter web app API (``/jupyter/api``, as
the dashboard calls it), so a notebook made here is the one the web app's form makes.

Notebooks live in a namespace: ``-n`` names it (``default`` without). A new notebook
gets the server's form defaults (``GET /jupyter/api/config``) for what is not given: its
image, CPU and memory (with limits from their factor), shared memory and a workspace
claim ``<name>-workspace`` at the home. That claim is kept when the notebook is
deleted: a notebook made again under the same name mounts it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ketch.cli.display import check_output, dump, print_table
from ketch.cli.http import connect, reporting
from ketch.cli.notebook_table import notebook_rows, phase
from ketch.cli.resources import DEFAULT_NAMESPACE, validate_name, validate_namespace
from ketch.core.errors import Conflict, InvalidSpec, KetchError

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

app = typer.Typer(
    help="Notebooks (JupyterLab, VS Code, RStudio servers): create, list, open, stop, "
    "start, delete.",
    no_args_is_help=True,
)

API = "/jupyter/api"
#: ``--type`` → the web app's server type
SERVER_TYPES = {"jupyter": "jupyter", "vscode": "group-one", "rstudio": "group-two"}
IMAGE_FIELDS = {"jupyter": "image", "group-one": "imageGroupOne", "group-two": "imageGroupTwo"}

NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace (profile)", show_default=True)
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json or yaml")]
NotebookName = Annotated[str, typer.Argument(metavar="NAME", help="The notebook's name")]


class WebApp:
    """The Jupyter web app API of the server ``api`` talks to, in ``namespace``."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        validate_namespace(namespace, field="--namespace")
        self.api = api
        self.namespace = namespace

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.api.json(method, f"{API}{path}", **kwargs)
        return found

    def here(self, path: str = "") -> str:
        return f"/namespaces/{self.namespace}{path}"

    def notebook(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", self.here(f"/notebooks/{name}"))["notebook"]
        return found

    def url(self, name: str) -> str:
        return f"{self.api.url}/notebook/{self.namespace}/{name}/"


def _workspace(app: WebApp, config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The form's workspace: the default one, or the claim of that name mounted again
    when the namespace has it already; ``None`` to leave it to the server."""
    setting = config.get("workspaceVolume") or {}
    default = setting.get("value")
    if setting.get("readOnly") or not isinstance(default, dict):
        return None
    new = default.get("newPvc")
    claim = ((new or {}).get("metadata") or {}).get("name") if isinstance(new, dict) else None
    if not isinstance(claim, str):
        return None
    claim = claim.replace("{notebook-name}", name)
    existing = {c.get("name") for c in app.call("GET", app.here("/pvcs"))["pvcs"]}
    if claim not in existing:
        return None
    return {
        "mount": default.get("mount", "/home/jovyan"),
        "existingSource": {"persistentVolumeClaim": {"claimName": claim}},
    }


def _form(
    app: WebApp,
    name: str,
    image: str | None,
    server_type: str,
    cpu: str | None,
    memory: str | None,
    workspace: bool,
    configurations: list[str],
) -> dict[str, Any]:
    config: dict[str, Any] = app.call("GET", "/config")["config"]
    body: dict[str, Any] = {"name": name, "serverType": server_type}
    if image is not None:
        options = (config.get(IMAGE_FIELDS[server_type]) or {}).get("options") or []
        body["image" if image in options else "customImage"] = image
    elif server_type != "jupyter":
        body["image"] = (config.get(IMAGE_FIELDS[server_type]) or {}).get("value")
    if cpu is not None:
        body["cpu"] = cpu
    if memory is not None:
        body["memory"] = memory
    if not workspace:
        body["workspace"] = None
    else:
        again = _workspace(app, config, name)
        if again is not None:
            body["workspace"] = again
    if configurations:
        body["configurations"] = configurations
    return body


def _wait_ready(app: WebApp, name: str, timeout: float) -> dict[str, Any]:
    """Wait until the notebook is ready, saying each new status on stderr."""
    start = time.monotonic()
    said = ""
    while True:
        notebook = app.notebook(name)
        status = notebook.get("processed_status") or {}
        shown = f"{phase(status)}: {status.get('message', '')}"
        if status.get("phase") == "ready":
            return notebook
        if shown != said:
            typer.echo(f"[{time.monotonic() - start:4.0f}s] notebook/{name} {shown}", err=True)
            said = shown
        if status.get("phase") == "stopped":
            raise KetchError(
                f"notebook/{name} is stopped",
                hint=f"start it with `ketch notebooks start {name} -n {app.namespace}`",
            )
        if time.monotonic() - start >= timeout:
            raise KetchError(
                f"timed out after {timeout:g}s waiting for notebook/{name} to be ready ({shown})",
                hint=f"`ketch describe notebook {name} -n {app.namespace}` shows its events",
            )
        time.sleep(0.5)


@app.command("create")
def create_notebook(
    name: NotebookName,
    image: Annotated[
        str | None, typer.Option("--image", help="Container image (default: the server's)")
    ] = None,
    server_type: Annotated[
        str, typer.Option("--type", help="jupyter, vscode or rstudio", show_default=True)
    ] = "jupyter",
    cpu: Annotated[
        str | None, typer.Option("--cpu", help="CPU request, e.g. 0.5 (default: the server's)")
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option("--memory", help="Memory request, e.g. 1Gi (default: the server's)"),
    ] = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    workspace: Annotated[
        bool,
        typer.Option(
            "--workspace/--no-workspace",
            help="Mount the workspace claim <name>-workspace at the home (kept on delete)",
        ),
    ] = True,
    configuration: Annotated[
        list[str] | None,
        typer.Option(
            "--configuration", help="A PodDefault's label to select (repeatable)", metavar="LABEL"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is ready")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds --wait waits at most")
    ] = 300.0,
    output: OutputOpt = None,
) -> None:
    """Create a notebook as the web app's form does (--wait: until it is ready)."""
    with reporting(), connect() as api:
        check_output(output, ("json", "yaml"))
        validate_name(name, field="NAME")
        if server_type not in SERVER_TYPES:
            raise InvalidSpec(
                f"{server_type!r} is not a server type; use {', '.join(SERVER_TYPES)}",
                field="--type",
            )
        if not timeout >= 0:
            raise InvalidSpec(f"must be 0 or more seconds, got {timeout:g}", field="--timeout")
        web = WebApp(api, namespace)
        body = _form(
            web,
            name,
            image,
            SERVER_TYPES[server_type],
            cpu,
            memory,
            workspace,
            list(configuration or []),
        )
        made = web.call("POST", web.here("/notebooks"), json=body)
        if not output:
            row = made.get("notebook") or {}
            typer.echo(
                f"notebook/{name} created in namespace {namespace} "
                f"({row.get('shortImage', '')}, cpu {row.get('cpu', '')}, "
                f"memory {row.get('memory', '')})"
            )
        if wait:
            _wait_ready(web, name, timeout)
        if output:
            dump(web.notebook(name), output)
            return
        if wait:
            typer.echo(f"notebook/{name} is ready: {web.url(name)}")
        else:
            typer.echo(f"URL: {web.url(name)}")


@app.command("list")
def list_notebooks(
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json, yaml or wide")] = None,
) -> None:
    """List notebooks: name, status, image, CPU, memory, age and URL."""
    with reporting(), connect() as api:
        check_output(output)
        web = WebApp(api, namespace)
        rows = web.call("GET", web.here("/notebooks"))["notebooks"]
        if output in ("json", "yaml"):
            dump({"notebooks": rows}, output)
            return
        if not rows:
            typer.echo(f"No notebooks found in namespace {namespace!r}.", err=True)
            return
        columns, table = notebook_rows(rows, api.url, wide=output == "wide")
        print_table(columns, table)


def _stopped(name: str, namespace: str, stop: bool) -> None:
    with reporting(), connect() as api:
        validate_name(name, field="NAME")
        web = WebApp(api, namespace)
        try:
            web.call("PATCH", web.here(f"/notebooks/{name}"), json={"stopped": stop})
        except Conflict as exc:
            if "already stopped" not in str(exc):
                raise
            typer.echo(f"notebook/{name} is stopped already")
            return
        typer.echo(f"notebook/{name} {'stopped' if stop else 'started'}")


@app.command("stop")
def stop_notebook(name: NotebookName, namespace: NamespaceOpt = DEFAULT_NAMESPACE) -> None:
    """Stop a notebook's server (kubeflow-resource-stopped); its files are kept."""
    _stopped(name, namespace, True)


@app.command("start")
def start_notebook(name: NotebookName, namespace: NamespaceOpt = DEFAULT_NAMESPACE) -> None:
    """Start a stopped notebook's server again."""
    _stopped(name, namespace, False)


@app.command("delete")
def delete_notebook(name: NotebookName, namespace: NamespaceOpt = DEFAULT_NAMESPACE) -> None:
    """Delete a notebook (its workspace claim is kept)."""
    with reporting(), connect() as api:
        validate_name(name, field="NAME")
        web = WebApp(api, namespace)
        web.call("DELETE", web.here(f"/notebooks/{name}"))
        typer.echo(f"notebook/{name} deleted")


def has_display() -> bool:
    """Whether a browser window can be shown: always on macOS and Windows, with an X or
    Wayland display elsewhere."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    """Show ``url`` in the user's browser without waiting for it: a command that would
    be waited for (``BROWSER=...``, a text browser) is started on its own, its input
    and output away from this terminal; one that would take the terminal over is not
    started. False when no browser was started."""
    import shlex
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if isinstance(browser, webbrowser.BackgroundBrowser):
        return bool(browser.open(url))
    if isinstance(browser, webbrowser.GenericBrowser):
        words = [browser.name] if shutil.which(browser.name) else shlex.split(browser.name)
        program = shutil.which(words[0]) if words else None
        if program is None:
            return False
        args = [*words[1:], *browser.args]
        if not any("%s" in arg for arg in args):
            args.append("%s")
        subprocess.Popen(
            [program, *(arg.replace("%s", url) for arg in args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return True
    if isinstance(browser, webbrowser.UnixBrowser) and not browser.background:
        return False  # a text browser, which would take this terminal over
    return bool(browser.open(url))


@app.command("open")
def open_notebook(
    name: NotebookName,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    browser: Annotated[
        bool, typer.Option("--browser", help="Also open it in the browser, when there is a display")
    ] = False,
) -> None:
    """Print the notebook's URL (and open it in the browser with --browser)."""
    with reporting(), connect() as api:
        validate_name(name, field="NAME")
        web = WebApp(api, namespace)
        row = web.notebook(name)
        url = web.url(name)
        typer.echo(url)
        status = row.get("processed_status") or {}
        if status.get("phase") != "ready":
            typer.echo(
                f"notebook/{name} is not ready ({phase(status)}: {status.get('message', '')})",
                err=True,
            )
        if not browser:
            return
        if not has_display():
            typer.echo("no display here: open the URL in a browser yourself", err=True)
        elif not open_browser(url):
            typer.echo("no browser could be started: open the URL yourself", err=True)
