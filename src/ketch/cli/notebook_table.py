"""The table of notebooks that ``ketch notebooks list`` and ``ketch get notebooks``
print: the Jupyter web app's rows (:func:`ketch.notebooks.summary.notebook_summary`)
as NAME, STATUS, IMAGE, CPU, MEMORY, AGE and URL (MESSAGE too, wide)."""

from __future__ import annotations

from typing import Any

from ketch.cli.display import age


def phase(status: dict[str, Any]) -> str:
    """The web app's phase of a notebook (``ready``, ``waiting``, ``stopped``, ...)."""
    return str(status.get("phase") or "-")


def notebook_rows(
    rows: list[dict[str, Any]], server: str, *, all_ns: bool = False, wide: bool = False
) -> tuple[list[str], list[list[str]]]:
    """The table of the web app's notebook rows."""
    columns = (["NAMESPACE"] if all_ns else []) + ["NAME", "STATUS", "IMAGE", "CPU", "MEMORY"]
    columns += ["AGE", "URL"] + (["MESSAGE"] if wide else [])
    table = []
    for row in rows:
        status = row.get("status") or {}
        line = ([str(row.get("namespace", ""))] if all_ns else []) + [
            str(row.get("name", "")),
            phase(status),
            str(row.get("image" if wide else "shortImage") or "-"),
            str(row.get("cpu") or "-"),
            str(row.get("memory") or "-"),
            age(row.get("age")),
            f"{server}{row.get('url', '')}",
        ]
        if wide:
            line.append(str(status.get("message") or "-"))
        table.append(line)
    return columns, table


def resource_rows(
    items: list[dict[str, Any]], server: str, all_ns: bool, wide: bool
) -> tuple[list[str], list[list[str]]]:
    """``ketch get notebooks``: the Notebooks (as the resource API serves them) in the
    same table as ``ketch notebooks list``."""
    from ketch.notebooks.summary import notebook_summary

    return notebook_rows(
        [notebook_summary(item, {}) for item in items], server, all_ns=all_ns, wide=wide
    )
