"""``ketch models``: the registered models of the server's Model Registry (list,
describe, versions, archive), read and changed through its REST API
(``/api/model_registry/v1``, as the ``model-registry`` client calls it).

Models live in a namespace (a profile): ``-n`` names one; without it the server picks
the caller's own profile (``default`` on a server without users). There is no delete,
as upstream: a model or one of its versions is archived (state ``ARCHIVED``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ketch.cli.display import age, check_output, dump, print_table
from ketch.cli.http import connect, reporting
from ketch.cli.resources import validate_namespace
from ketch.core.errors import NotFound

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

app = typer.Typer(
    help="Registered models of the Model Registry: list, describe, versions, archive.",
    no_args_is_help=True,
)

API = "/api/model_registry/v1"
#: the most a page of the registry's lists holds
PAGE = 1000
#: how many pages of versions ``list`` reads to count each model's versions
COUNT_PAGES = 10

NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace (profile); default: your own profile, 'default' without users",
    ),
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json or yaml")]
ModelName = Annotated[str, typer.Argument(metavar="NAME", help="The registered model's name")]

#: a registered model's fields ``describe`` shows, after its name, id and state
MODEL_FIELDS = (
    ("owner", "Owner"),
    ("description", "Description"),
    ("externalId", "External ID"),
    ("maturity", "Maturity"),
    ("provider", "Provider"),
    ("license", "License"),
    ("licenseLink", "License link"),
    ("libraryName", "Library"),
    ("language", "Languages"),
    ("tasks", "Tasks"),
    ("logo", "Logo"),
)


class Registry:
    """The Model Registry API of the server ``api`` talks to, in ``namespace`` (the
    server's choice when ``None``)."""

    def __init__(self, api: ApiClient, namespace: str | None) -> None:
        if namespace is not None:
            validate_namespace(namespace, field="--namespace")
        self.api = api
        self.namespace = namespace

    def get(self, path: str, **params: Any) -> Any:
        if self.namespace is not None:
            params["namespace"] = self.namespace
        return self.api.json("GET", f"{API}{path}", params=params)

    def pages(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[Any]:
        """The items of the list at ``path``, page by page (at most ``limit`` pages)."""
        token = ""
        read = 0
        while limit is None or read < limit:
            page = self.get(path, pageSize=PAGE, nextPageToken=token, **params)
            read += 1
            yield from page.get("items") or []
            token = page.get("nextPageToken") or ""
            if not token:
                return

    def where(self) -> str:
        return f" in the namespace {self.namespace!r}" if self.namespace else ""

    def model(self, name: str) -> dict[str, Any]:
        """The registered model ``name`` (NotFound naming it and what to run)."""
        try:
            found: dict[str, Any] = self.get("/registered_model", name=name)
        except NotFound:
            raise NotFound(
                f"no registered model named {name!r}{self.where()}",
                hint="`ketch models list` shows the registered models",
            ) from None
        return found

    def version(self, model: dict[str, Any], version: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.get(
                "/model_version", name=version, parentResourceId=model["id"]
            )
        except NotFound:
            raise NotFound(
                f"registered model {model['name']!r} has no version {version!r}",
                hint=f"`ketch models versions {model['name']}` lists its versions",
            ) from None
        return found

    def versions(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        """The model's versions, oldest first, each with its ``artifacts``."""
        found = list(self.pages(f"/registered_models/{model['id']}/versions"))
        for version in found:
            version["artifacts"] = list(self.pages(f"/model_versions/{version['id']}/artifacts"))
        return found


def _time(ms: Any) -> str:
    """An API time (milliseconds since the epoch, a string) as RFC 3339, or ''."""
    try:
        when = datetime.fromtimestamp(int(ms) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(ms: Any) -> str:
    stamp = _time(ms)
    return f"{age(stamp)} ago" if stamp else "-"


def _value(item: dict[str, Any]) -> tuple[str, str]:
    """A custom property's type and value as the tables show them."""
    kind = str(item.get("metadataType", ""))
    for key in ("string_value", "int_value", "double_value", "bool_value", "struct_value"):
        if key in item:
            value = item[key]
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            return key.removesuffix("_value"), shown
    if "proto_value" in item:
        return f"proto {item.get('type', '')}".strip(), str(item["proto_value"])
    return kind or "-", "-"


def _artifact_uris(version: dict[str, Any]) -> str:
    uris = [str(a.get("uri", "")) for a in version.get("artifacts", []) if a.get("uri")]
    return ", ".join(uris) or "-"


def _formats(version: dict[str, Any]) -> str:
    formats = []
    for artifact in version.get("artifacts", []):
        name = artifact.get("modelFormatName")
        if name:
            given = artifact.get("modelFormatVersion")
            formats.append(f"{name} {given}" if given else str(name))
    return ", ".join(formats) or "-"


def _summaries(registry: Registry) -> tuple[dict[str, int], dict[str, str], bool]:
    """Each model's version count and latest version (by id), from the newest
    versions of the namespace, :data:`COUNT_PAGES` pages at most; whether that was
    all of them (else the counts are partial and not shown)."""
    counts: dict[str, int] = {}
    latest: dict[str, str] = {}
    seen = 0
    for version in registry.pages(
        "/model_versions", limit=COUNT_PAGES, orderBy="ID", sortOrder="DESC"
    ):
        seen += 1
        model = str(version.get("registeredModelId", ""))
        counts[model] = counts.get(model, 0) + 1
        latest.setdefault(model, str(version.get("name", "")))
    return counts, latest, seen < COUNT_PAGES * PAGE


@app.command("list")
def list_models(namespace: NamespaceOpt = None, output: OutputOpt = None) -> None:
    """List registered models: name, id, state, owner, latest version, versions."""
    with reporting(), connect() as api:
        check_output(output, ("json", "yaml"))
        registry = Registry(api, namespace)
        models = list(registry.pages("/registered_models"))
        if output:
            dump({"items": models}, output)
            return
        if not models:
            typer.echo(f"No registered models found{registry.where()}.", err=True)
            return
        counts, latest, complete = _summaries(registry)
        rows = []
        for model in models:
            key = str(model["id"])
            newest = latest.get(key)
            if newest is None and not complete:  # beyond the versions counted
                found = registry.get(
                    f"/registered_models/{key}/versions",
                    pageSize=1,
                    orderBy="ID",
                    sortOrder="DESC",
                ).get("items")
                newest = found[0]["name"] if found else None
            rows.append(
                [
                    str(model.get("name", "")),
                    key,
                    str(model.get("state", "-")),
                    str(model.get("owner") or "-"),
                    newest or "-",
                    str(counts.get(key, 0)) if complete else "-",
                    _ago(model.get("lastUpdateTimeSinceEpoch")),
                ]
            )
        print_table(["NAME", "ID", "STATE", "OWNER", "LATEST VERSION", "VERSIONS", "UPDATED"], rows)


@app.command("describe")
def describe_model(
    name: ModelName, namespace: NamespaceOpt = None, output: OutputOpt = None
) -> None:
    """Show a registered model: its fields, custom properties and versions.

    Each version is shown with its artifacts' URIs and model formats."""
    with reporting(), connect() as api:
        check_output(output, ("json", "yaml"))
        registry = Registry(api, namespace)
        model = registry.model(name)
        versions = registry.versions(model)
        if output:
            dump({**model, "versions": versions}, output)
            return
        lines = [("Name", model.get("name", "")), ("ID", model.get("id", ""))]
        if namespace:
            lines.append(("Namespace", namespace))
        lines.append(("State", model.get("state", "-")))
        for key, label in MODEL_FIELDS:
            value = model.get(key)
            if value not in (None, "", []):
                lines.append((label, ", ".join(value) if isinstance(value, list) else str(value)))
        for key, label in (
            ("createTimeSinceEpoch", "Created"),
            ("lastUpdateTimeSinceEpoch", "Updated"),
        ):
            lines.append((label, f"{_time(model.get(key))} ({_ago(model.get(key))})"))
        for label, value in lines:
            typer.echo(f"{label + ':':<14}{value}")
        readme = model.get("readme")
        if readme:
            typer.echo("Readme:")
            typer.echo("\n".join(f"  {line}" for line in str(readme).splitlines()))
        properties = model.get("customProperties") or {}
        typer.echo("Custom properties:" + ("" if properties else "  <none>"))
        if properties:
            print_table(
                ["NAME", "TYPE", "VALUE"],
                [[key, *_value(item)] for key, item in sorted(properties.items())],
            )
        typer.echo("Versions:" + ("" if versions else "  <none>"))
        if versions:
            print_table(
                ["NAME", "ID", "STATE", "AUTHOR", "CREATED", "ARTIFACT URI", "FORMAT"],
                [
                    [
                        str(v.get("name", "")),
                        str(v.get("id", "")),
                        str(v.get("state", "-")),
                        str(v.get("author") or "-"),
                        _ago(v.get("createTimeSinceEpoch")),
                        _artifact_uris(v),
                        _formats(v),
                    ]
                    for v in versions
                ],
            )


@app.command("versions")
def list_versions(
    name: ModelName, namespace: NamespaceOpt = None, output: OutputOpt = None
) -> None:
    """List a registered model's versions (oldest first) with their artifacts' URIs."""
    with reporting(), connect() as api:
        check_output(output, ("json", "yaml"))
        registry = Registry(api, namespace)
        model = registry.model(name)
        versions = registry.versions(model)
        if output:
            dump({"items": versions}, output)
            return
        if not versions:
            typer.echo(f"Registered model {name!r} has no versions.", err=True)
            return
        print_table(
            ["NAME", "ID", "STATE", "AUTHOR", "CREATED", "ARTIFACT URI"],
            [
                [
                    str(v.get("name", "")),
                    str(v.get("id", "")),
                    str(v.get("state", "-")),
                    str(v.get("author") or "-"),
                    _ago(v.get("createTimeSinceEpoch")),
                    _artifact_uris(v),
                ]
                for v in versions
            ],
        )


@app.command("archive")
def archive_model(
    name: ModelName,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Archive only this version of the model"),
    ] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Archive a registered model, or one of its versions with --version.

    The state becomes ARCHIVED; nothing is deleted (the Model Registry keeps it)."""
    with reporting(), connect() as api:
        registry = Registry(api, namespace)
        model = registry.model(name)
        if version is None:
            target, path, what = (
                model,
                f"/registered_models/{model['id']}",
                f"registered model {name}",
            )
        else:
            target = registry.version(model, version)
            path, what = f"/model_versions/{target['id']}", f"version {version} of {name}"
        if target.get("state") == "ARCHIVED":
            typer.echo(f"{what} was archived already")
            return
        api.json("PATCH", f"{API}{path}", json={"state": "ARCHIVED"})
        typer.echo(f"{what} archived")
