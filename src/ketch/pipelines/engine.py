"""The DAG engine: executes a PipelineSpec with the KFP backend's semantics.

One thread owns the run's state (:mod:`ketch.pipelines.tasks`) and reacts to
events; container and importer tasks run on a bounded pool of worker threads that
start processes through the compute backend. DAGs (sub-pipelines, conditions, exit
handlers) and ParallelFor loops are expanded in the engine thread as their inputs
resolve (:mod:`ketch.pipelines.inputs`).
"""

from __future__ import annotations

import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.timestamps import utcnow
from ketch.pipelines.conditions import Conditions
from ketch.pipelines.inputs import resolve_inputs, root_inputs
from ketch.pipelines.spec import producers
from ketch.pipelines.tasks import (
    CANCELED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    Listener,
    Node,
    RunContext,
    Scope,
    TaskRunner,
)
from ketch.pipelines.values import coerce, integral

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        ctx: RunContext,
        runner: TaskRunner,
        recorder: Any,
        max_parallelism: int | None = None,
        listener: Listener | None = None,
    ):
        self.ctx = ctx
        self.ir = ctx.ir
        self.runner = runner
        self.recorder = recorder
        self.listener = listener
        self.max_parallelism = max(1, max_parallelism or os.cpu_count() or 1)
        self.events: queue.Queue[tuple[str, Node | None]] = queue.Queue()
        self.pool = ThreadPoolExecutor(self.max_parallelism, thread_name_prefix="ketch-task")
        self.nodes: dict[str, Node] = {}
        self.running_leaves = 0
        self.root: Scope | None = None
        self.conditions = Conditions()
        self._changed = False

    # ------------------------------------------------------------ entry point

    def execute(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """Run to completion. Returns (state, outputs, error)."""
        root_params, root_artifacts = root_inputs(self.ir, arguments)
        self.root = Scope("", self.ir.root["dag"], root_params, root_artifacts, owner=None)
        self._populate(self.root)
        self._schedule_all()
        try:
            while not self.root.done():
                try:
                    kind, node = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "leaf-done" and node is not None:
                    self.running_leaves -= 1
                    node.inflight = False
                    self._finish(node)
                elif kind == "cancel":
                    self._cancel()
                self._schedule_all()
        finally:
            self.pool.shutdown(wait=True)
            self.runner.run_ended(self.ctx)
        outputs, artifacts = self._dag_outputs(self.root)
        state, error = self._root_state()
        return state, {"parameters": outputs, "artifacts": artifacts}, error

    def cancel(self, *, interrupt: bool = False) -> None:
        """Ask the run to stop (thread-safe): running tasks are terminated.

        ``interrupt=True`` is for a stopping server: the run is not canceled but
        left to be resumed when the server starts again.
        """
        self.ctx.interrupted = self.ctx.interrupted or interrupt
        self.ctx.canceled.set()
        self.events.put(("cancel", None))

    # ------------------------------------------------------------ expansion

    def _component(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.ir.components[task["componentRef"]["name"]]

    def _populate(self, scope: Scope) -> None:
        for tname, task in scope.dag.get("tasks", {}).items():
            comp = self._component(task)
            if "parameterIterator" in task or "artifactIterator" in task:
                kind = "loop"
            elif "dag" in comp:
                kind = "dag"
            else:
                executor = self.ir.executors.get(comp.get("executorLabel", ""), {})
                kind = "importer" if "importer" in executor else "container"
            node = Node(
                path=scope.prefix + tname,
                name=tname,
                type=kind,
                task=task,
                component=comp,
                scope=scope,
            )
            if node.path in self.ctx.task_ids:
                node.id = self.ctx.task_ids[node.path]
            scope.nodes[tname] = node
            self.nodes[node.path] = node

    def _schedule_all(self) -> None:
        # Nodes can finish synchronously while scheduling (skipped, reused,
        # failed on inputs); repeat until a pass changes nothing.
        while self.root is not None:
            self._changed = False
            self._schedule(self.root)
            if not self._changed:
                break

    def _schedule(self, scope: Scope) -> None:
        for node in list(scope.nodes.values()):
            if node.state == PENDING:
                self._try_start(node, scope)
            elif node.state == RUNNING and node.child is not None:
                self._schedule(node.child)
                if node.child.done():
                    self._finish_dag(node)
            elif node.state == RUNNING and node.type == "loop":
                self._advance_loop(node)

    def _try_start(self, node: Node, scope: Scope) -> None:
        deps = [scope.nodes[d] for d in producers(node.task)]
        if not all(d.finished for d in deps):
            return
        strategy = node.task.get("triggerPolicy", {}).get(
            "strategy", "ALL_UPSTREAM_TASKS_SUCCEEDED"
        )
        tolerant = strategy == "ALL_UPSTREAM_TASKS_COMPLETED"
        if self.ctx.canceled.is_set():
            return self._end(node, CANCELED, "the run was canceled before this task started")
        bad = [d for d in deps if d.state in (FAILED, CANCELED)]
        if bad and not tolerant:
            return self._end(
                node, SKIPPED, f"not run: upstream task {bad[0].name!r} {bad[0].state}"
            )
        if scope.failing and not tolerant:
            return self._end(node, SKIPPED, "not run: another task in this DAG failed")
        try:
            resolve_inputs(node, scope, self.ctx)
            condition = node.task.get("triggerPolicy", {}).get("condition")
            if condition and not self.conditions.evaluate(condition, node.inputs, node.path):
                return self._end(node, SKIPPED, None)
        except KetchError as exc:
            return self._end(node, FAILED, str(exc))
        node.state = RUNNING
        node.started_at = utcnow()
        if node.type == "dag":
            self._start_dag(node)
        elif node.type == "loop":
            self._start_loop(node)
        elif node.path in self.ctx.finished:
            self._reuse(node, self.ctx.finished[node.path])
        else:
            if self.runner.records_start:  # with its process's pod, once it started
                node.start_pending = True
            else:
                self.recorder.task_started(self.ctx, node)
            self._notify(node)
            self.running_leaves += 1
            node.inflight = True
            self.pool.submit(self._run_leaf, node)

    def _reuse(self, node: Node, prior: dict[str, Any]) -> None:
        """A task that finished in an earlier attempt of this run is not executed again."""
        node.outputs = dict(prior.get("parameters", {}))
        node.output_artifacts = {k: list(v) for k, v in prior.get("artifacts", {}).items()}
        node.cached = bool(prior.get("cached"))
        node.attempts = int(prior.get("attempts") or 1)
        node.log_path = prior.get("log_path")
        node.cache_key = prior.get("cache_key")
        node.started_at = prior.get("started_at") or node.started_at
        node.finished_at = prior.get("finished_at")
        node.state = SUCCEEDED
        node.reused = True
        self._finish(node)

    def _run_leaf(self, node: Node) -> None:
        try:
            self.runner.run(node, self.ctx)
        except KetchError as exc:
            node.state, node.error = FAILED, str(exc)
        except Exception as exc:  # a bug in Ketch must not hang the run
            log.exception("task %s crashed in the engine", node.path)
            node.state, node.error = FAILED, f"internal error: {type(exc).__name__}: {exc}"
        if node.state not in TERMINAL:
            node.state = FAILED
            node.error = node.error or "task ended without a state"
        self.events.put(("leaf-done", node))

    def _finish(self, node: Node) -> None:
        self._changed = True
        node.finished_at = node.finished_at or utcnow()
        try:
            self.recorder.task_finished(self.ctx, node)
        except Exception:
            log.exception("could not record task %s", node.path)
        if node.state in (FAILED, CANCELED) and node.scope is not None:
            node.scope.failing = True
        self._notify(node)

    def _end(self, node: Node, state: str, error: str | None) -> None:
        node.state = state
        node.error = error
        node.started_at = node.started_at or utcnow()
        node.finished_at = utcnow()
        self._finish(node)

    def _notify(self, node: Node) -> None:
        if self.listener is not None:
            try:
                self.listener(node)
            except Exception:  # a progress display must never break a run
                log.debug("listener failed", exc_info=True)

    # ------------------------------------------------------------ DAGs

    def _child_inputs(self, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(node.inputs), {k: list(v) for k, v in node.input_artifacts.items()}

    def _start_dag(self, node: Node) -> None:
        params, artifacts = self._child_inputs(node)
        node.child = Scope(node.path + "/", node.component["dag"], params, artifacts, owner=node)
        self._populate(node.child)
        self.recorder.task_started(self.ctx, node)
        self._notify(node)
        self._schedule(node.child)
        if node.child.done():
            self._finish_dag(node)

    def _finish_dag(self, node: Node) -> None:
        assert node.child is not None
        children = node.child.nodes.values()
        failed = [c for c in children if c.state == FAILED]
        canceled = [c for c in children if c.state == CANCELED]
        if failed:
            node.state = FAILED
            node.error = f"task {failed[0].path!r} failed: {failed[0].error}"
        elif canceled:
            node.state = CANCELED
        else:
            node.state = SUCCEEDED
            node.outputs, node.output_artifacts = self._dag_outputs(node.child)
        self._finish(node)

    def _dag_outputs(self, scope: Scope) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        outs = scope.dag.get("outputs", {})
        params: dict[str, Any] = {}
        for name, sel in outs.get("parameters", {}).items():
            selectors = (
                [sel["valueFromParameter"]]
                if "valueFromParameter" in sel
                else sel.get("valueFromOneof", {}).get("parameterSelectors", [])
            )
            for s in selectors:
                producer = scope.nodes.get(s.get("producerSubtask", ""))
                if (
                    producer
                    and producer.state == SUCCEEDED
                    and s.get("outputParameterKey") in producer.outputs
                ):
                    params[name] = producer.outputs[s["outputParameterKey"]]
                    break
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for name, sel in outs.get("artifacts", {}).items():
            for s in sel.get("artifactSelectors", []):
                producer = scope.nodes.get(s.get("producerSubtask", ""))
                if (
                    producer
                    and producer.state == SUCCEEDED
                    and s.get("outputArtifactKey") in producer.output_artifacts
                ):
                    artifacts[name] = producer.output_artifacts[s["outputArtifactKey"]]
                    break
        return params, artifacts

    # ------------------------------------------------------------ loops

    def _start_loop(self, node: Node) -> None:
        task = node.task
        if "parameterIterator" in task:
            it = task["parameterIterator"]
            items_spec = it.get("items", {})
            if "raw" in items_spec:
                import json

                try:
                    items = json.loads(items_spec["raw"])
                except json.JSONDecodeError as exc:
                    return self._end(node, FAILED, f"ParallelFor items are not valid JSON: {exc}")
            else:
                items = node.inputs.get(items_spec.get("inputParameter", ""))
            if isinstance(items, str):
                import json

                try:
                    items = json.loads(items)
                except json.JSONDecodeError:
                    pass
            if not isinstance(items, list):
                return self._end(
                    node, FAILED, f"ParallelFor needs a list to iterate over, got {items!r}"
                )
        else:
            it = task["artifactIterator"]
            items = node.input_artifacts.get(it.get("items", {}).get("inputArtifact", ""), [])
        node.items = [integral(i) for i in items]
        self.recorder.task_started(self.ctx, node)
        self._notify(node)
        self._advance_loop(node)

    def _advance_loop(self, node: Node) -> None:
        limit = int(node.task.get("iteratorPolicy", {}).get("parallelismLimit", 0) or 0)
        for it in node.iterations:
            if it.state == RUNNING and it.child is not None:
                self._schedule(it.child)
                if it.child.done():
                    self._finish_dag(it)
        active = sum(1 for it in node.iterations if it.state not in TERMINAL)
        while node.next_iteration < len(node.items) and (limit <= 0 or active < limit):
            if self.ctx.canceled.is_set() or (
                node.child is None and any(it.state == FAILED for it in node.iterations)
            ):
                break
            self._start_iteration(node, node.next_iteration)
            node.next_iteration += 1
            active += 1
        finished = all(it.state in TERMINAL for it in node.iterations)
        stopped = self.ctx.canceled.is_set() or any(it.state == FAILED for it in node.iterations)
        if finished and (node.next_iteration >= len(node.items) or stopped):
            self._finish_loop(node)

    def _start_iteration(self, loop: Node, index: int) -> None:
        item = loop.items[index]
        path = f"{loop.path}[{index}]"
        it = Node(
            path=path,
            name=f"{loop.name}[{index}]",
            type="iteration",
            task=loop.task,
            component=loop.component,
            scope=loop.scope,
        )
        if path in self.ctx.task_ids:
            it.id = self.ctx.task_ids[path]
        params, artifacts = self._child_inputs(loop)
        comp_inputs = loop.component.get("inputDefinitions", {})
        if "parameterIterator" in loop.task:
            key = loop.task["parameterIterator"]["itemInput"]
            ptype = comp_inputs.get("parameters", {}).get(key, {}).get("parameterType")
            try:
                params[key] = coerce(item, ptype, f"{path}: loop item")
            except InvalidSpec:
                params[key] = integral(item)  # items of mixed shape go through as they are
        else:
            key = loop.task["artifactIterator"]["itemInput"]
            artifacts[key] = [item]
        it.inputs = {"loop-item": item} if not isinstance(item, dict) or "uri" not in item else {}
        it.state = RUNNING
        it.started_at = utcnow()
        it.child = Scope(path + "/", loop.component["dag"], params, artifacts, owner=it)
        loop.iterations.append(it)
        self.nodes[it.path] = it
        self._populate(it.child)
        self.recorder.task_started(self.ctx, it)
        self._notify(it)
        self._schedule(it.child)
        if it.child.done():
            self._finish_dag(it)

    def _finish_loop(self, node: Node) -> None:
        failed = [it for it in node.iterations if it.state == FAILED]
        canceled = [it for it in node.iterations if it.state == CANCELED]
        if failed:
            node.state, node.error = (
                FAILED,
                f"iteration {failed[0].path!r} failed: {failed[0].error}",
            )
        elif canceled or self.ctx.canceled.is_set():
            node.state = CANCELED
        else:
            node.state = SUCCEEDED
            dag_outs = node.component["dag"].get("outputs", {})
            for name, sel in dag_outs.get("parameters", {}).items():
                producer = sel.get("valueFromParameter", {}).get("producerSubtask")
                values: list[Any] = []
                for it in node.iterations:
                    if name not in it.outputs:
                        continue
                    inner = it.child.nodes.get(producer or "") if it.child else None
                    if (
                        inner is not None
                        and inner.type == "loop"
                        and isinstance(it.outputs[name], list)
                    ):
                        values.extend(it.outputs[name])  # Collected over nested loops is flat
                    else:
                        values.append(it.outputs[name])
                node.outputs[name] = values
            for name in dag_outs.get("artifacts", {}):
                arts: list[dict[str, Any]] = []
                for it in node.iterations:
                    arts.extend(it.output_artifacts.get(name, []))
                node.output_artifacts[name] = arts
        self._finish(node)

    # ------------------------------------------------------------ cancel & result

    def _cancel(self) -> None:
        # Running processes are terminated; pending nodes become CANCELED as the
        # scheduler reaches them, and loops stop expanding.
        self.runner.cancel_all()

    def _root_state(self) -> tuple[str, str | None]:
        assert self.root is not None
        nodes = list(self.root.nodes.values())
        failed = [
            n
            for n in self.nodes.values()
            if n.state == FAILED and n.type in ("container", "importer")
        ]
        if self.ctx.canceled.is_set():
            return CANCELED, "the run was canceled"
        if any(n.state == FAILED for n in nodes):
            culprit = failed[0] if failed else next(n for n in nodes if n.state == FAILED)
            return FAILED, f"task {culprit.path!r} failed: {culprit.error}"
        if any(n.state == CANCELED for n in nodes):
            return CANCELED, "the run was canceled"
        return SUCCEEDED, None
