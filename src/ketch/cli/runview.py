"""Live progress and the closing summary of a pipeline run in the terminal."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ketch.pipelines.tasks import Node

_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "SKIPPED": "dim",
    "CANCELED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
}
_LEAVES = ("container", "importer")
MAX_ROWS = 40


def _short(value: Any, width: int = 48) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "uri" in value[0]:
        kinds = sorted({str(a.get("type", "")).removeprefix("system.") for a in value})
        text = (
            f"<{', '.join(kinds)}>" if len(value) == 1 else f"<{len(value)} × {', '.join(kinds)}>"
        )
    else:
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class RunView:
    """Shows tasks as they start and finish; a table at the end."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.out = Console()
        self.interactive = self.console.is_terminal and not quiet
        self.nodes: dict[str, Node] = {}
        self.run_id: str | None = None
        self._live: Live | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> RunView:
        if self.interactive:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=8, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def started(self, run_id: str) -> None:
        self.run_id = run_id
        if not self.quiet:
            self.console.print(f"run [bold]{run_id}[/bold] started")

    def update(self, node: Node) -> None:
        with self._lock:
            self.nodes[node.path] = node
        if self._live is not None:
            self._live.update(self._render())
        elif not self.quiet and node.type in _LEAVES and node.state not in ("RUNNING", "PENDING"):
            note = " (cached)" if node.cached else ""
            self.console.print(f"  {node.state:<9} {node.path}{note}", highlight=False)

    def _render(self) -> Table:
        leaves = [n for n in self.nodes.values() if n.type in _LEAVES]
        counts: dict[str, int] = {}
        for n in leaves:
            counts[n.state] = counts.get(n.state, 0) + 1
        table = Table.grid(padding=(0, 1))
        summary = "  ".join(f"{k.lower()}: {v}" for k, v in sorted(counts.items())) or "starting…"
        table.add_row(Text(f"run {self.run_id or ''}", style="bold"), Text(summary))
        for n in [n for n in leaves if n.state == "RUNNING"][:10]:
            table.add_row(Text("  ⟳ running", style="cyan"), Text(n.path))
        return table

    def summary(self, run: Any) -> None:
        table = Table(title=f"run {run.id} · {run.pipeline_name}", title_justify="left")
        table.add_column("task")
        table.add_column("state")
        table.add_column("duration", justify="right")
        table.add_column("outputs", overflow="fold")
        rows = [t for t in run.tasks.values() if t.type in _LEAVES or t.state == "FAILED"]
        for t in rows[:MAX_ROWS]:
            state = t.state + (" (cached)" if t.cached else "")
            duration = f"{t.duration:.2f}s" if t.duration is not None else ""
            outs = "; ".join(f"{k}={_short(v)}" for k, v in t.outputs.items())
            table.add_row(t.path, Text(state, style=_STYLE.get(t.state, "")), duration, outs)
        if len(rows) > MAX_ROWS:
            table.add_row(f"… {len(rows) - MAX_ROWS} more tasks", "", "", "")
        self.out.print(table)
        style = _STYLE.get(run.state, "")
        self.out.print(Text(f"{run.state}", style=style), f"run {run.id}")
        if run.outputs:
            for name, value in run.outputs.items():
                shown = getattr(value, "uri", None) or (
                    [getattr(v, "uri", v) for v in value] if isinstance(value, list) else value
                )
                self.out.print(f"  output {name}: {shown}", highlight=False)
        self._metrics(run)
        self.out.print(
            f"  artifacts under {run.pipeline_root}/{run.pipeline_name}/{run.id}",
            highlight=False,
            soft_wrap=True,  # a path is copied whole: never broken across lines
        )
        logs = {t.log_path for t in run.tasks.values() if t.log_path}
        if logs:
            folder = str(next(iter(logs))).split(run.id)[0] + run.id
            self.out.print(f"  task logs under {folder}", highlight=False, soft_wrap=True)
        if run.error:
            self.console.print(Text(f"error: {run.error}", style="red"))

    def _metrics(self, run: Any) -> None:
        """Scalar metrics and confusion matrices, the way people read them."""
        for task in run.tasks.values():
            for name, arts in task.outputs.items():
                if not isinstance(arts, list):
                    continue
                for art in arts:
                    if not isinstance(art, dict):
                        continue
                    meta = art.get("metadata") or {}
                    if art.get("type") == "system.Metrics" and meta:
                        table = Table(title=f"{task.path} · {name}", title_justify="left")
                        table.add_column("metric")
                        table.add_column("value", justify="right")
                        for key, value in meta.items():
                            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                            table.add_row(key, shown)
                        self.out.print(table)
                    matrix = meta.get("confusionMatrix") if isinstance(meta, dict) else None
                    if art.get("type") == "system.ClassificationMetrics" and matrix:
                        labels = [
                            str(c.get("displayName", c)) if isinstance(c, dict) else str(c)
                            for c in matrix.get("annotationSpecs") or matrix.get("categories", [])
                        ]
                        rows = [
                            r.get("row", r) if isinstance(r, dict) else r
                            for r in matrix.get("rows", matrix.get("matrix", []))
                        ]
                        table = Table(
                            title=f"{task.path} · {name}: confusion matrix (rows: actual)",
                            title_justify="left",
                        )
                        table.add_column("")
                        for label in labels:
                            table.add_column(label, justify="right")
                        for label, row in zip(labels, rows, strict=False):
                            table.add_row(label, *[str(v) for v in row])
                        self.out.print(table)

    def as_json(self, run: Any) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for name, value in run.outputs.items():
            if isinstance(value, list) and value and hasattr(value[0], "uri"):
                outputs[name] = [_artifact_json(v) for v in value]
            elif hasattr(value, "uri") and hasattr(value, "metadata"):
                outputs[name] = _artifact_json(value)
            else:
                outputs[name] = value
        return {
            "id": run.id,
            "name": run.name,
            "state": run.state,
            "error": run.error,
            "tasks": {
                path: {"state": t.state, "cached": t.cached, "type": t.type, "error": t.error}
                for path, t in run.tasks.items()
            },
            "outputs": outputs,
        }


def _artifact_json(a: Any) -> dict[str, Any]:
    return {"name": a.name, "uri": a.uri, "type": a.schema_title, "metadata": a.metadata}
