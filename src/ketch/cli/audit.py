"""``ketch audit``: the server's audit log (every state-changing request: who, what,
where, and the answer), newest first, as a table or JSON. Cluster admins only."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ketch.cli.display import print_table
from ketch.cli.http import reporting
from ketch.core import config


def audit(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's requests")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only requests in this namespace")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many")] = 50,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json")] = None,
) -> None:
    """Show the audit log of the server (KETCH_URL, else the current one)."""
    from ketch.core.http import ApiClient

    params: dict[str, Any] = {"limit": limit}
    if user:
        params["user"] = user
    if namespace:
        params["namespace"] = namespace
    with reporting(), ApiClient(config.server_url()) as api:
        answer = api.json("GET", "/auth/audit", params=params)
    items = answer.get("items", []) if isinstance(answer, dict) else []
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        return
    print_table(
        ["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE"],
        [
            [
                str(e.get("at", ""))[:19].replace("T", " "),
                str(e.get("user", "")),
                str(e.get("verb") or e.get("method", "")),
                str(e.get("resource") or e.get("path", "")),
                str(e.get("namespace", "")),
                str(e.get("name", "")),
                str(e.get("code", "")),
            ]
            for e in items
        ],
    )
