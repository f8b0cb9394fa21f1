"""kubectl-like verbs against the API server: apply, get, describe, delete, logs, wait.

Kinds are named as Kubeflow names them, in any case, singular or plural
(``pytorchjob``, ``PyTorchJobs``, ``isvc``, ``run``); ``ketch get kinds`` lists them.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ketch.cli.display import (
    age,
    check_output,
    dump,
    not_ready_reason,
    print_table,
    ready_of,
    show,
    state_of,
)
from ketch.cli.http import NoServer, collection_path, connect, fail, object_path, reporting
from ketch.core.conditions import is_finished
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.kinds import Kind, KindRegistry

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace", show_default=True)
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json, yaml or wide")]
_DISPLAY_NAME = "pipelines.ketch.dev/display-name"
# ketch.core.resource.DEFAULT_NAMESPACE (tests/cli/test_startup.py checks they agree):
# that module imports pydantic, which a command imports when it runs, not at every start.
DEFAULT_NAMESPACE = "default"
# Where the server keeps cluster-scoped objects (ClusterTrainingRuntime, ...).
CLUSTER_NAMESPACE = DEFAULT_NAMESPACE


def scoped(kind: Kind, namespace: str) -> str:
    """The namespace to address ``kind`` in: ``namespace`` (checked), or for a
    cluster-scoped kind the one the server keeps those in, whatever ``-n`` says."""
    validate_namespace(namespace, field="--namespace")
    return namespace if kind.namespaced else CLUSTER_NAMESPACE


def validate_name(name: str, field: str = "metadata.name", group: str = "") -> str:
    """:func:`ketch.core.resource.validate_object_name` (a name of API group ``group``),
    imported when first called."""
    from ketch.core.resource import validate_object_name

    return validate_object_name(name, group, field)


def validate_namespace(namespace: str, field: str = "metadata.namespace") -> str:
    """:func:`ketch.core.resource.validate_namespace`, imported when first called."""
    from ketch.core.resource import validate_namespace as check

    return check(namespace, field)


# -- apply -------------------------------------------------------------------------

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _manifest_files(source: str, recursive: bool) -> list[Path]:
    """The files ``-f source`` names: the file itself, or a directory's manifests."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = _walk(path, recursive)
        if not files:
            where = "or below it" if recursive else "(-R also reads its subdirectories)"
            raise InvalidSpec(f"no .yaml, .yml or .json files in {source} {where}", field="-f")
        return files
    if path.exists():
        return [path]
    raise InvalidSpec(f"{source} does not exist", field="-f")


def _walk(folder: Path, recursive: bool) -> list[Path]:
    """A directory's manifest files in name order, then (with ``recursive``) its
    subdirectories' in turn, as ``kubectl apply -f DIR -R`` reads them. Links to
    directories are not followed."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise InvalidSpec(
            f"cannot read the directory {folder}: {exc.strerror or exc}", field="-f"
        ) from None
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            if recursive and not entry.is_symlink():
                files.extend(_walk(entry, recursive))
        elif entry.suffix in _MANIFEST_SUFFIXES and entry.is_file():
            files.append(entry)
    return files


def _read_sources(sources: list[str], recursive: bool) -> list[tuple[str, str]]:
    """``(where, text)`` of every file the ``-f`` options name, in order.

    Every path is checked before any is read, so a typo in the last ``-f`` applies
    nothing."""
    if not sources:
        raise InvalidSpec("name what to apply with -f FILE, -f DIR or -f - (stdin)", field="-f")
    if sources.count("-") > 1:
        raise InvalidSpec("'-' (stdin) may be given once", field="-f")
    planned: list[Path | None] = []
    for source in sources:
        if source == "-":
            planned.append(None)
        else:
            planned.extend(_manifest_files(source, recursive))
    texts: list[tuple[str, str]] = []
    for file in planned:
        if file is None:
            texts.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            texts.append((str(file), file.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            raise InvalidSpec(f"{file} is not UTF-8 text", field="-f") from None
        except OSError as exc:
            raise InvalidSpec(f"cannot read {file}: {exc.strerror or exc}", field="-f") from None
    return texts


def _read_documents(sources: list[str], recursive: bool = False) -> list[tuple[str, Any]]:
    """``(where, document)`` for every manifest in the files, directories or stdin named.

    ``where`` names the file and the document's place in it (``a.yaml (document 2)``),
    so a refused document can be found. A file that cannot be parsed is an
    ``InvalidSpec`` before anything is applied."""
    documents: list[tuple[str, Any]] = []
    for where, text in _read_sources(sources, recursive):
        documents.extend(_parse(where, text))
    if not documents:
        raise InvalidSpec(f"no manifests in {', '.join(sources)}", field="-f")
    return documents


def _parse(where: str, text: str) -> list[tuple[str, Any]]:
    """The documents of one file, parsed as the server parses bodies (bounded nesting
    and alias expansion); ``.json`` files (and stdin starting with ``{``) as JSON,
    whose tabs YAML would refuse."""
    from ketch.core.documents import load_json, load_yaml_all

    looks_json = where == "<stdin>" and text.lstrip()[:1] == "{"
    if where.endswith(".json") or looks_json:
        try:
            documents = [load_json(text, field=where)]
        except InvalidSpec:
            if not looks_json:
                raise
            documents = load_yaml_all(text, field=where)  # YAML flow style starts with { too
    else:
        documents = load_yaml_all(text, field=where)
    items: list[tuple[str, Any]] = []
    for index, document in enumerate(documents, start=1):
        label = f"{where} (document {index})"
        if isinstance(document, dict) and document.get("kind") == "List":
            listed = document.get("items")
            if not isinstance(listed, list):
                items.append(
                    (label, InvalidSpec(f"{label}: a List needs items, a list of manifests"))
                )
                continue
            items.extend(
                (f"{where} (document {index}, item {n})", item)
                for n, item in enumerate(listed, start=1)
            )
        else:
            items.append((label, document))
    return items


def _prepare(
    kinds: KindRegistry, where: str, document: Any, namespace: str | None
) -> tuple[Kind, str, str | None, dict[str, Any]]:
    """The kind, namespace and name of a manifest, checked. ``namespace`` is ``-n``
    when given: a manifest that names another namespace is refused, as kubectl does."""
    if isinstance(document, KetchError):
        raise document
    if not isinstance(document, dict):
        raise InvalidSpec(f"{where}: a manifest must be a mapping, got {type(document).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise InvalidSpec(f"{where}: {key} is required")
    try:
        kind = kinds.for_manifest(document["apiVersion"], document["kind"])
    except KetchError as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidSpec(f"{where}: metadata must be a mapping")
    for key in ("name", "namespace"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise InvalidSpec(
                f"{where}: metadata.{key} must be a string, got {type(metadata[key]).__name__}"
            )
    ns = metadata.get("namespace") or namespace or DEFAULT_NAMESPACE
    name = metadata.get("name")
    if kind.namespaced and namespace is not None and ns != namespace:
        raise InvalidSpec(
            f"{where}: metadata.namespace is {ns!r} but -n says {namespace!r}; "
            f"drop -n, or pass -n {ns}"
        )
    try:
        validate_namespace(ns, field="metadata.namespace")
        if name is not None or kind.kind != "PipelineRun":
            validate_name(name or "", field="metadata.name")
    except KetchError as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    if not kind.namespaced and ns != CLUSTER_NAMESPACE:  # cluster-scoped: no namespace of its own
        ns = CLUSTER_NAMESPACE
        document = {**document, "metadata": {**metadata, "namespace": ns}}
    return kind, ns, name, document


def apply(
    files: Annotated[
        list[str],
        typer.Option(
            "--filename",
            "-f",
            help="A YAML/JSON file, a directory of them, or - for stdin (repeatable)",
        ),
    ],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace of manifests that name none (default: default); one that "
            "names another is refused",
            show_default=False,
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-R", help="Also read the subdirectories of -f DIR")
    ] = False,
) -> None:
    """Create or update the resources in files (multi-document YAML, JSON, directories).

    Every document is applied even when others are refused (each refusal names its
    file and document). Exit 0: all applied; 1: some refused; 2: nothing valid.
    """
    with reporting(), connect() as client:
        if namespace is not None:
            validate_namespace(namespace, field="--namespace")
        documents = _read_documents(files, recursive)
        kinds = client.kinds()
        applied = 0
        codes: set[int] = set()
        for where, document in documents:
            try:
                kind, ns, name, manifest = _prepare(kinds, where, document, namespace)
            except KetchError as exc:
                typer.echo(f"error: {exc}", err=True)
                codes.add(exc.exit_code)
                continue
            version = manifest["apiVersion"].rsplit("/", 1)[-1]
            try:
                if name is None:
                    response = client.request(
                        "POST", collection_path(kind, ns, version), json=manifest
                    )
                    result = "created"
                else:
                    response = client.request(
                        "PUT", object_path(kind, ns, name, version), json=manifest
                    )
                    result = response.headers.get("X-Ketch-Apply", "configured")
            except NoServer:
                raise
            except KetchError as exc:
                typer.echo(f"error: {where}: {kind.singular}/{name or '?'}: {exc}", err=True)
                codes.add(exc.exit_code)
                continue
            applied += 1
            typer.echo(f"{kind.singular}/{response.json()['metadata']['name']} {result}")
        if codes:
            # Nothing applied and every refusal was the input's fault: bad input (2).
            raise typer.Exit(codes.pop() if applied == 0 and len(codes) == 1 else 1)


# -- get --------------------------------------------------------------------------


def list_objects(
    client: ApiClient, kind: Kind, namespace: str | None, selector: str | None = None
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if selector:
            params["labelSelector"] = selector
        if token:
            params["continue"] = token
        page = client.json("GET", collection_path(kind, namespace), params=params)
        yield from page.get("items", [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def _rows(
    kind: Kind, items: list[dict[str, Any]], all_ns: bool, wide: bool
) -> tuple[list[str], list[list[str]]]:
    if kind.kind in ("Experiment", "Trial"):
        from ketch.cli import experiments

        table_rows = (
            experiments.experiment_rows if kind.kind == "Experiment" else experiments.trial_rows
        )
        return table_rows(items, all_ns, wide)
    is_run = kind.kind == "PipelineRun"
    show_ready = any(ready_of(item) is not None for item in items)
    show_url = any(isinstance((item.get("status") or {}).get("url"), str) for item in items)
    show_reason = any(not_ready_reason(item)[0] for item in items)
    columns = (["NAMESPACE"] if all_ns else []) + ["NAME"]
    if is_run:
        columns.append("DISPLAY NAME")
    if show_url:
        columns.append("URL")
    columns.append("STATE")
    if show_ready:
        columns.append("READY")
    if show_reason:
        columns.append("REASON")
    columns.append("AGE")
    if wide:
        if show_ready:
            columns.append("MESSAGE")
        columns += ["GENERATION", "LABELS"]
    rows: list[list[str]] = []
    for item in items:
        meta = item.get("metadata", {})
        status = item.get("status") or {}
        reason, message = not_ready_reason(item)
        row = ([meta.get("namespace", "")] if all_ns else []) + [meta.get("name", "")]
        if is_run:
            row.append((meta.get("annotations") or {}).get(_DISPLAY_NAME, ""))
        if show_url:
            row.append(str(status.get("url") or "-"))
        row.append(state_of(item))
        if show_ready:
            row.append(ready_of(item) or "-")
        if show_reason:
            row.append(reason or "-")
        row.append(age(meta.get("creationTimestamp")))
        if wide:
            if show_ready:
                row.append(message or "-")
            labels = meta.get("labels") or {}
            row += [
                str(meta.get("generation", "")),
                ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>",
            ]
        rows.append(row)
    return columns, rows


def get(
    kind_name: Annotated[
        str, typer.Argument(metavar="KIND", help="pytorchjob, isvc, run, ... or 'kinds'")
    ],
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="One object's name")] = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace")
    ] = False,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=x,tier!=y")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Show one object or list a kind (table, or -o json|yaml|wide)."""
    with reporting(), connect() as client:
        check_output(output)
        if kind_name.lower() in ("kinds", "kind"):
            kinds = list(client.kinds())
            if output in ("json", "yaml"):
                dump([k.to_json() for k in kinds], output)
                return
            print_table(
                ["KIND", "APIVERSION", "PLURAL", "SHORTNAMES"],
                [[k.kind, k.api_version, k.plural, ",".join(k.short_names)] for k in kinds],
            )
            return
        kind = client.kind(kind_name)
        namespace = scoped(kind, namespace)
        if name is not None:
            validate_name(name, field="NAME", group=kind.group)
            item = client.json("GET", object_path(kind, namespace, name))
            items = [item]
        else:
            everywhere = all_namespaces or not kind.namespaced
            items = list(list_objects(client, kind, None if everywhere else namespace, selector))
        if output in ("json", "yaml"):
            document = (
                items[0]
                if name is not None
                else {"apiVersion": "v1", "kind": "List", "items": items}
            )
            dump(document, output)
            return
        if not items:
            where = (
                ""
                if not kind.namespaced
                else " in any namespace"
                if all_namespaces
                else f" in namespace {namespace!r}"
            )
            typer.echo(f"No {kind.plural} found{where}.", err=True)
            return
        all_ns = all_namespaces and kind.namespaced and name is None
        if kind.kind == "Notebook" and kind.group == "kubeflow.org":
            from ketch.cli.notebook_table import resource_rows

            columns, rows = resource_rows(items, client.url, all_ns, output == "wide")
        else:
            columns, rows = _rows(kind, items, all_ns, output == "wide")
        print_table(columns, rows)


# -- describe ------------------------------------------------------------------------


def describe(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Experiments: refresh the trial table until the experiment finishes "
            "(exit 0 if it succeeded, 1 if it failed)",
        ),
    ] = False,
) -> None:
    """Show an object's spec, status, conditions and recent events."""
    with reporting(), connect() as client:
        kind = client.kind(kind_name)
        namespace = scoped(kind, namespace)
        validate_name(name, field="NAME", group=kind.group)
        if watch:
            if kind.kind != "Experiment":
                raise InvalidSpec(
                    f"--watch shows experiments as they run; {kind.plural} have no live view",
                    field="--watch",
                )
            from ketch.cli.experiments import watch_experiment

            raise typer.Exit(watch_experiment(client, kind, namespace, name))
        item = client.json("GET", object_path(kind, namespace, name))
        events: list[dict[str, Any]] = []
        if kind.kind != "PipelineRun":
            selector = f"involvedObject.kind={kind.kind},involvedObject.name={name}"
            events = client.json(
                "GET",
                f"/api/v1/namespaces/{namespace}/events",
                params={"fieldSelector": selector, "limit": 20},
            ).get("items", [])
        if kind.kind == "Experiment":
            from ketch.cli.experiments import describe_experiment

            describe_experiment(client, item, events)
            return
        show(item, events)


# -- delete -------------------------------------------------------------------------


#: kinds whose deletion deletes more than the object, and what
_TAKES_MORE = {"Profile": "its namespace and everything in it (jobs, services, secrets, ...)"}


def _confirm_delete(kind: Kind, names: list[str], yes: bool) -> None:
    """Ask before deleting objects whose deletion takes more with it (a profile's
    namespace); ``--yes`` answers for a script, and without a terminal it is required."""
    more = _TAKES_MORE.get(kind.kind)
    if more is None or yes:
        return
    what = f"{kind.singular} {', '.join(names)}"
    if not sys.stdin.isatty():
        raise InvalidSpec(
            f"deleting {what} also deletes {more}, and stdin is not a terminal, so this "
            "cannot be confirmed",
            field="--yes",
            hint=f"add --yes to delete {what}",
        )
    if not typer.confirm(f"Delete {what} and {more}?", default=False, err=True):
        raise typer.Exit(1)


def delete(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Names to delete")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    ignore_not_found: Annotated[
        bool, typer.Option("--ignore-not-found", help="No error for missing objects")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask before deleting a profile's namespace"),
    ] = False,
) -> None:
    """Delete objects by name (a profile with its namespace, once confirmed)."""
    with reporting(), connect() as client:
        kind = client.kind(kind_name)
        namespace = scoped(kind, namespace)
        for name in names:
            validate_name(name, field="NAME", group=kind.group)
        _confirm_delete(kind, names, yes)
        for name in names:
            try:
                client.request("DELETE", object_path(kind, namespace, name))
            except NotFound:
                if ignore_not_found:
                    continue
                raise
            typer.echo(f"{kind.singular}/{name} deleted")


# -- logs --------------------------------------------------------------------------


def logs(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until it ends")
    ] = False,
    replica: Annotated[
        str | None,
        typer.Option(
            "--replica",
            help="Replica: worker-1 (short for NAME-worker-1), master-0, or a full key of status.logPaths",
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Pipeline task path, e.g. train")
    ] = None,
) -> None:
    """Print an object's logs (a pipeline run's task logs, a job replica's log)."""
    with reporting(), connect() as client:
        kind = client.kind(kind_name)
        namespace = scoped(kind, namespace)
        validate_name(name, field="NAME")
        if replica is not None and task is not None:
            raise InvalidSpec(
                "give --replica (jobs, services) or --task (pipeline runs), not both",
                field="--replica",
            )
        if kind.kind == "PipelineRun":
            if replica is not None:
                raise InvalidSpec(
                    "pipeline runs have tasks, not replicas; use --task", field="--replica"
                )
        elif task is not None:
            raise InvalidSpec(
                f"--task names a pipeline run's task; {kind.plural} have replicas (--replica)",
                field="--task",
            )
        if replica is not None:
            if not replica.strip():
                raise InvalidSpec("must not be empty", field="--replica")
            replica = resolve_replica(client, kind, namespace, name, replica, follow=follow)
        if not stream_logs(
            client, kind, namespace, name, follow=follow, replica=replica, task=task
        ):
            of = f" {replica}" if replica else f" {task}" if task else ""
            typer.echo(f"{kind.singular}/{name}{of}: no log output (yet)", err=True)


def replica_key(log_paths: Any, name: str, replica: str) -> str | None:
    """The key of ``status.logPaths`` that ``--replica`` means, if it is there yet.

    Training jobs key their replicas ``<job>-<type>-<index>`` (``mnist-worker-1``);
    ``worker-1`` is short for that. An exact key always wins; case does not matter.
    """
    if not isinstance(log_paths, dict) or not log_paths:
        return None
    keys = [str(k) for k in log_paths]
    candidates = [replica, f"{name}-{replica}"]
    for candidate in candidates:
        if candidate in keys:
            return candidate
    lowered = {k.lower(): k for k in keys}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def resolve_replica(
    client: ApiClient, kind: Kind, namespace: str, name: str, replica: str, *, follow: bool
) -> str:
    """The ``status.logPaths`` key ``replica`` names. With ``follow``, waits for a
    replica that has not started yet (until the object finishes); otherwise, and when
    nothing matches, ``replica`` as given, for the server to refuse with the list of
    replicas it knows."""
    path = object_path(kind, namespace, name)
    told = False
    while True:
        item = client.json("GET", path)
        status = item.get("status") or {}
        found = replica_key(
            status.get("logPaths") if isinstance(status, dict) else None, name, replica
        )
        if found is not None:
            return found
        if not follow or is_finished(item):
            return replica
        if not told:
            typer.echo(
                f"waiting for replica {replica} of {kind.singular}/{name} to start (Ctrl-C to stop)",
                err=True,
            )
            told = True
        time.sleep(0.25)


def stream_logs(
    client: ApiClient,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    follow: bool,
    replica: str | None = None,
    task: str | None = None,
) -> bool:
    """Copy the log to stdout; False when there was none."""
    params: dict[str, Any] = {"follow": "true" if follow else "false"}
    if replica:
        params["replica"] = replica
    if task:
        params["task"] = task
    out = sys.stdout.buffer
    wrote = False
    with client.stream(f"{object_path(kind, namespace, name)}/log", params=params) as response:
        for chunk in response.iter_raw():
            out.write(chunk)
            out.flush()
            wrote = wrote or bool(chunk)
    return wrote


# -- wait ---------------------------------------------------------------------------


def _parse_for(text: str) -> tuple[str, str | None]:
    if text == "delete":
        return "delete", None
    if not text.startswith("condition="):
        raise InvalidSpec(
            f"cannot wait --for {text!r}; use condition=TYPE, condition=TYPE=VALUE or delete",
            field="--for",
        )
    rest = text.removeprefix("condition=")
    type_, _, value = rest.partition("=")
    if not type_:
        raise InvalidSpec("condition=TYPE needs a condition type", field="--for")
    return type_, (value or "True")


def _condition_status(item: dict[str, Any], type_: str) -> str | None:
    for condition in (item.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and str(condition.get("type", "")).lower() == type_.lower():
            return str(condition.get("status"))
    return None


def wait(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
    condition: Annotated[str, typer.Option("--for", help="condition=TYPE[=VALUE] or delete")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait")] = 30.0,
) -> None:
    """Wait until an object's condition holds (exit 0), or time out (exit 1)."""
    with reporting(), connect() as client:
        type_, wanted = _parse_for(condition)
        if timeout < 0 or math.isnan(timeout):
            raise InvalidSpec(
                f"must be a number of seconds, 0 or more (inf: no limit); got {timeout:g}",
                field="--timeout",
            )
        kind = client.kind(kind_name)
        namespace = scoped(kind, namespace)
        validate_name(name, field="NAME")
        path = object_path(kind, namespace, name)
        deadline = time.monotonic() + timeout
        first = True
        while True:
            try:
                item = client.json("GET", path)
            except NotFound:
                if type_ == "delete":
                    typer.echo(f"{kind.singular}/{name} deleted")
                    return
                if first:
                    raise
                item = {}
            first = False
            if type_ != "delete" and _condition_status(item, type_) == wanted:
                typer.echo(f"{kind.singular}/{name} condition met")
                return
            if time.monotonic() >= deadline:
                what = "deletion" if type_ == "delete" else f"condition {type_}={wanted}"
                fail(
                    KetchError(
                        f"timed out after {timeout:g}s waiting for {what} on {kind.singular}/{name}"
                    )
                )
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
