"""A pipeline run as a graph and as text: what the run detail page draws and lists.

Made from the run's compiled pipeline (its IR: each DAG's tasks and their
``dependentTasks``) and the tasks the run stored (``PipelineRun``'s ``status.tasks``:
path, type, state), so a task that has not started yet is drawn too. Sub-DAGs
(conditions, nested pipelines) are nodes whose tasks hang off them; a ParallelFor is a
loop node whose iterations' tasks are drawn each (up to :data:`LOOP_LIMIT`
iterations) or, for a bigger loop, once for all iterations with the count per state,
so a loop of hundreds of items stays a handful of nodes. Nodes are placed in layers by
their depth in the graph (the longest path to them), ordered in a layer by where their
predecessors are, as a simple Sugiyama layout; the browser only draws them.

Everything here is proportional to the run's tasks: one pass over the IR and one over
the stored tasks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: a loop with more iterations than this is drawn once, with counts per state
LOOP_LIMIT = 12
#: the iterations a loop's list shows per page
ITERATIONS_PAGE = 50
#: a node's colour by state
COLOURS = {
    "SUCCEEDED": "#2e9e5b",
    "RUNNING": "#1a73e8",
    "PENDING": "#f2b600",
    "FAILED": "#d93025",
    "CANCELED": "#5f6368",
    "CANCELING": "#5f6368",
    "SKIPPED": "#c4c7cc",
    "NOT RUN": "#e3e5e8",
}
ACTIVE = {"PENDING", "RUNNING", "CANCELING", "PAUSED"}
_INDEX = re.compile(r"\[(\d+)\]$")
X_STEP, Y_STEP = 190, 64


@dataclass
class Node:
    """A node of the graph: one task, or one task of every iteration of a big loop."""

    id: str
    label: str
    type: str
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    task_id: str = ""
    condition: str = ""
    layer: int = 0
    order: float = 0.0


@dataclass
class Row:
    """A line of the task list."""

    path: str
    name: str
    type: str
    state: str
    depth: int
    task_id: str = ""
    start: str = ""
    end: str = ""
    condition: str = ""
    loop: dict[str, Any] | None = None


@dataclass
class RunGraph:
    nodes: list[Node]
    edges: list[tuple[str, str, bool]]  # source, target, whether it is containment
    rows: list[Row]
    loops: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.state for r in self.rows if r.type not in ("loop",)))


def aggregate(states: list[str]) -> str:
    """The state of a node standing for several tasks."""
    if not states:
        return "PENDING"
    found = set(states)
    if len(found) == 1:
        return states[0]
    for state in ("RUNNING", "FAILED", "CANCELING", "CANCELED"):
        if state in found:
            return state
    if found & {"PENDING", ""}:
        return "RUNNING" if found - {"PENDING", ""} else "PENDING"
    if found <= {"SUCCEEDED", "SKIPPED"}:
        return "SUCCEEDED"
    return sorted(found)[0]


def _kind(task: dict[str, Any], component: dict[str, Any]) -> str:
    if "parameterIterator" in task or "artifactIterator" in task:
        return "loop"
    if "dag" in component:
        return "dag"
    if "importer" in str(task.get("componentRef", {}).get("name", "")):
        return "importer"
    return "container"


def _ordered(dag_tasks: dict[str, Any]) -> list[str]:
    """A DAG's task names, each after those it depends on (ties: the IR's order)."""
    names = list(dag_tasks)
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, trail: frozenset[str]) -> None:
        if name in seen or name in trail:
            return
        for dep in dag_tasks[name].get("dependentTasks") or []:
            if dep in dag_tasks:
                visit(dep, trail | {name})
        seen.add(name)
        done.append(name)

    for name in names:
        visit(name, frozenset())
    return done


def build(
    ir: dict[str, Any],
    tasks: list[dict[str, Any]],
    *,
    run_active: bool,
    ids: dict[str, str] | None = None,
    loop_limit: int = LOOP_LIMIT,
) -> RunGraph:
    """The graph and the task list of a run (see the module): ``tasks`` are
    ``status.tasks`` of its PipelineRun, ``ids`` the KFP task ids by path."""
    ids = ids or {}
    components = ir.get("components") or {}
    stored = {str(t.get("path")): t for t in tasks}
    iterations: dict[str, list[tuple[int, str]]] = {}
    for path, task in stored.items():
        if task.get("type") == "iteration" and (found := _INDEX.search(path)):
            iterations.setdefault(path[: found.start()], []).append((int(found.group(1)), path))
    for listed_ in iterations.values():
        listed_.sort()
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str, bool]] = []
    rows: list[Row] = []
    loops: list[dict[str, Any]] = []

    def state_of(path: str, inherited: str) -> str:
        task = stored.get(path)
        if task is not None:
            return str(task.get("state") or "PENDING")
        if inherited in ("SKIPPED", "NOT RUN"):
            return inherited
        return "PENDING" if run_active else "NOT RUN"

    def row_of(path: str, name: str, kind: str, state: str, depth: int, **extra: Any) -> Row:
        task = stored.get(path) or {}
        return Row(
            path=path,
            name=name,
            type=kind,
            state=state,
            depth=depth,
            task_id=ids.get(path, ""),
            start=str(task.get("startTime") or ""),
            end=str(task.get("completionTime") or ""),
            **extra,
        )

    def walk(
        dag: dict[str, Any],
        prefixes: list[tuple[str, str]],
        pattern: str,
        parent: str | None,
        suffix: str,
        depth: int,
        listed: bool,
    ) -> None:
        """Draw ``dag``'s tasks under each of ``prefixes`` (a concrete path prefix and
        the state its owner is in) as one node each, named ``pattern`` + task."""
        dag_tasks = dag.get("tasks") or {}
        for name in _ordered(dag_tasks):
            task = dag_tasks[name]
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            kind = _kind(task, component)
            label = str(task.get("taskInfo", {}).get("name") or name)
            condition = str(task.get("triggerPolicy", {}).get("condition") or "")
            paths = [(prefix + name, state_of(prefix + name, owner)) for prefix, owner in prefixes]
            states = [s for _p, s in paths]
            node_id = pattern + name
            many = len(prefixes) != 1
            node = Node(
                id=node_id,
                label=label + (f" ×{len(paths)}" if many else suffix),
                type=kind,
                state=aggregate(states) if paths else ("PENDING" if run_active else "NOT RUN"),
                counts=dict(Counter(states)),
                task_id="" if many else ids.get(paths[0][0], ""),
                condition=condition,
            )
            nodes[node_id] = node
            deps = [d for d in task.get("dependentTasks") or [] if d in dag_tasks]
            for dep in deps:
                edges.append((pattern + dep, node_id, False))
            if not deps and parent is not None:
                edges.append((parent, node_id, True))
            for path, state in paths if listed else []:
                rows.append(row_of(path, label, kind, state, depth, condition=condition))
            inner = component.get("dag") or {}
            if kind == "dag":
                walk(
                    inner,
                    [(p + "/", s) for p, s in paths],
                    node_id + "/",
                    node_id,
                    suffix,
                    depth + 1,
                    listed,
                )
            elif kind == "loop":
                every: list[tuple[str, str]] = []
                for path, state in paths:
                    for _index, iteration in iterations.get(path, []):
                        every.append((iteration, state_of(iteration, state)))
                if listed and not many:
                    path = paths[0][0] if paths else node_id
                    loop = {
                        "path": path,
                        "name": label,
                        "total": len(every),
                        "counts": dict(Counter(s for _p, s in every)),
                        "iterations": [
                            {"path": p, "index": i, "state": s, "task_id": ids.get(p, "")}
                            for i, (p, s) in enumerate(every)
                        ],
                    }
                    loops.append(loop)
                    rows[-1].loop = loop
                small = not many and len(every) <= loop_limit
                if small:
                    for iteration, state in every:
                        index = iteration[iteration.rindex("[") :]
                        if listed:
                            rows.append(
                                row_of(iteration, f"{label} {index}", "iteration", state, depth + 1)
                            )
                        walk(
                            inner,
                            [(iteration + "/", state)],
                            f"{node_id}{index}/",
                            node_id,
                            f" {index}",
                            depth + 2,
                            listed,
                        )
                    if not every:
                        walk(inner, [], node_id + "[*]/", node_id, "", depth + 1, False)
                else:
                    walk(
                        inner,
                        [(p + "/", s) for p, s in every],
                        node_id + "[*]/",
                        node_id,
                        "",
                        depth + 1,
                        False,
                    )

    root = ir.get("root") or {}
    walk(root.get("dag") or {}, [("", "")], "", None, "", 0, True)
    _layout(nodes, edges)
    return RunGraph(list(nodes.values()), edges, rows, loops)


def _layout(nodes: dict[str, Node], edges: list[tuple[str, str, bool]]) -> None:
    """Layers by the longest path to each node, then in each layer an order by the
    mean order of its predecessors (one sweep)."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target, _contained in edges:
        if source in nodes and target in nodes:
            preds[target].append(source)
    # nodes were added in an order where every predecessor comes first
    for node in nodes.values():
        node.layer = max((nodes[p].layer + 1 for p in preds[node.id]), default=0)
    layers: dict[int, list[Node]] = {}
    for position, node in enumerate(nodes.values()):
        node.order = position
        layers.setdefault(node.layer, []).append(node)
    for layer in sorted(layers):
        members = layers[layer]
        for node in members:
            before = [nodes[p].order for p in preds[node.id]]
            node.order = sum(before) / len(before) if before else node.order
        members.sort(key=lambda n: n.order)
        for index, node in enumerate(members):
            node.order = index


def chart(graph: RunGraph, link: Any) -> dict[str, Any]:
    """The ECharts options drawing ``graph`` (``link(task_id)``: a task's page)."""
    sizes = Counter(n.layer for n in graph.nodes)
    tallest = max(sizes.values(), default=1)
    data = []
    for node in graph.nodes:
        height = sizes[node.layer]
        y = (node.order - (height - 1) / 2) * Y_STEP + (tallest - 1) * Y_STEP / 2
        state = node.state
        text = node.label
        if len(node.counts) > 1 or "×" in node.label:
            text += "\n" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(node.counts.items()))
        else:
            text += f"\n{state.lower()}"
        item: dict[str, Any] = {
            "name": node.id,
            "value": state,
            "x": node.layer * X_STEP,
            "y": y,
            "symbol": {"loop": "diamond", "dag": "rect"}.get(node.type, "roundRect"),
            "symbolSize": [150, 40] if node.type != "loop" else [150, 46],
            "itemStyle": {
                "color": COLOURS.get(state, "#9aa0a6"),
                "borderColor": "#1f2937" if node.type in ("dag", "loop") else "#ffffff",
                "borderType": "dashed" if node.type in ("dag", "loop") else "solid",
                "borderWidth": 1.5,
                "opacity": 0.55 if state in ("SKIPPED", "NOT RUN") else 1,
            },
            "label": {"formatter": text},
        }
        if node.task_id:
            item["href"] = link(node.task_id)
        data.append(item)
    links = [
        {
            "source": source,
            "target": target,
            "lineStyle": {"type": "dashed" if contained else "solid"},
        }
        for source, target, contained in graph.edges
    ]
    return {
        "animation": False,
        "tooltip": {},
        "series": [
            {
                "type": "graph",
                "layout": "none",
                "roam": True,
                # the box is the nodes' extent: drawn 1:1, as laid out here
                "left": 90,
                "top": 30,
                "width": max(1, max((n.layer for n in graph.nodes), default=0) * X_STEP),
                "height": max(1, (tallest - 1) * Y_STEP),
                "edgeSymbol": ["none", "arrow"],
                "edgeSymbolSize": 8,
                "label": {"show": True, "color": "#111827", "fontSize": 11, "lineHeight": 13},
                "lineStyle": {"color": "#6b7280", "width": 1.2, "curveness": 0},
                "data": data,
                "links": links,
            }
        ],
    }


def chart_height(graph: RunGraph) -> int:
    tallest = max(Counter(n.layer for n in graph.nodes).values(), default=1)
    return max(220, min(900, tallest * Y_STEP + 80))
