"""A pipeline's graph as drawn on the dashboard: the tasks of a DAG of a KFP pipeline
spec (IR), laid out in layers (a task below everything it depends on), as SVG-ready
boxes and edges; a task that is itself a DAG (a sub-pipeline, a loop, a condition's
branch) is one box saying so.

:func:`layout` takes the tasks and their dependencies only, so a run's page can lay out
its tasks the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOX_WIDTH = 170
BOX_HEIGHT = 44
GAP_X = 30
GAP_Y = 46
MARGIN = 12


@dataclass
class Node:
    """A box of the graph: its task's name, what it is, and where it sits."""

    name: str
    label: str
    kind: str = "task"  # task | dag | loop | condition | importer
    depends: list[str] = field(default_factory=list)
    layer: int = 0
    x: int = 0
    y: int = 0

    @property
    def cx(self) -> int:
        return self.x + BOX_WIDTH // 2


@dataclass
class Edge:
    source: str
    target: str
    path: str


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(tasks: list[tuple[str, str, str, list[str]]]) -> Graph:
    """Boxes and edges for ``tasks`` (``(name, label, kind, depends_on)``): each task one
    layer below the deepest task it depends on, the tasks of a layer side by side in
    the order given."""
    nodes = {
        name: Node(name, label, kind, [d for d in depends]) for name, label, kind, depends in tasks
    }
    for node in nodes.values():
        node.depends = [d for d in node.depends if d in nodes and d != node.name]
    depth: dict[str, int] = {}

    def layer_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        if name in seen:  # a cycle is no DAG: break it
            return 0
        node = nodes[name]
        found = 1 + max((layer_of(d, seen | {name}) for d in node.depends), default=-1)
        depth[name] = found
        return found

    layers: dict[int, list[Node]] = {}
    for name, node in nodes.items():
        node.layer = layer_of(name)
        layers.setdefault(node.layer, []).append(node)
    widest = max((len(row) for row in layers.values()), default=0)
    width = MARGIN * 2 + widest * BOX_WIDTH + max(widest - 1, 0) * GAP_X
    for index, row in sorted(layers.items()):
        row_width = len(row) * BOX_WIDTH + (len(row) - 1) * GAP_X
        start = (width - row_width) // 2
        for position, node in enumerate(row):
            node.x = start + position * (BOX_WIDTH + GAP_X)
            node.y = MARGIN + index * (BOX_HEIGHT + GAP_Y)
    edges = []
    for node in nodes.values():
        for dep in node.depends:
            above = nodes[dep]
            x1, y1 = above.cx, above.y + BOX_HEIGHT
            x2, y2 = node.cx, node.y
            middle = (y1 + y2) // 2
            edges.append(Edge(dep, node.name, f"M{x1},{y1} C{x1},{middle} {x2},{middle} {x2},{y2}"))
    height = MARGIN * 2 + len(layers) * BOX_HEIGHT + max(len(layers) - 1, 0) * GAP_Y
    return Graph(list(nodes.values()), edges, width, height)


def kind_of(task: dict[str, Any], spec: dict[str, Any]) -> str:
    """What a task of a DAG is: a loop, a condition's branch, a sub-DAG, an importer or
    a task."""
    if task.get("parameterIterator") or task.get("artifactIterator"):
        return "loop"
    if (task.get("triggerPolicy") or {}).get("condition"):
        return "condition"
    component = (spec.get("components") or {}).get(
        (task.get("componentRef") or {}).get("name", ""), {}
    )
    if "dag" in component:
        return "dag"
    executor = ((spec.get("deploymentSpec") or {}).get("executors") or {}).get(
        component.get("executorLabel", ""), {}
    )
    return "importer" if "importer" in executor else "task"


def spec_graph(spec: dict[str, Any]) -> Graph:
    """The graph of a pipeline spec's root DAG."""
    dag = (spec.get("root") or {}).get("dag") or {}
    tasks = []
    for name, task in (dag.get("tasks") or {}).items():
        label = (task.get("taskInfo") or {}).get("name") or name
        tasks.append((name, label, kind_of(task, spec), list(task.get("dependentTasks") or [])))
    return layout(tasks)
