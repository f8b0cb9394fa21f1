"""Runs one loaded model: admission (bounded queue), inline or threaded calls, batching.

A model call that takes microseconds runs inline on the event loop, where a
thread hop would cost more than the call. A slower one runs in a thread pool so
the loop stays free. The runner measures each callable's cost (moving average)
and decides per call; a callable of unknown cost starts in the pool.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ketch.serving.batching import AdaptiveBatcher
from ketch.serving.errors import ServerOverloaded
from ketch.serving.metrics import Metrics
from ketch.serving.model import ArrayModel, Model

Arrays = dict[str, np.ndarray]
log = logging.getLogger("ketch.serving")

# A call whose average cost is under this runs inline on the event loop.
INLINE_BUDGET_S = 0.0005
# Pool calls between two inline tries of a callable that is cheap in CPU time.
PROBE_EVERY = 64
# ... and only when its pool calls take less than this in wall time.
PROBE_WALL_LIMIT_S = 0.02
_SMOOTHING = 0.2


class CostTracker:
    """Decides inline or pool for one callable from what its calls cost.

    Inline calls are timed on the loop (wall time: exact there). Pool calls are
    timed in wall time and in CPU time of the worker thread; the latter does not
    count waiting for the GIL. A call that is cheap in CPU time and not long in
    wall time (so it does not block on I/O) but went to the pool (its cost was
    unknown, or one slow outlier) is tried inline again, and stays inline if it
    is cheap there too.
    """

    __slots__ = ("inline_cost", "pool_cost", "pool_wall", "calls")

    def __init__(self) -> None:
        self.inline_cost: float | None = None
        self.pool_cost: float | None = None
        self.pool_wall: float | None = None
        self.calls = 0

    def inline(self) -> bool:
        if self.inline_cost is not None and self.inline_cost < INLINE_BUDGET_S:
            return True
        if self.pool_cost is None or self.pool_cost >= INLINE_BUDGET_S:
            return False
        if self.pool_wall is None or self.pool_wall >= PROBE_WALL_LIMIT_S:
            return False
        self.calls += 1
        return self.inline_cost is None or self.calls % PROBE_EVERY == 0

    def record_inline(self, seconds: float) -> None:
        cost = self.inline_cost
        if cost is None or cost >= INLINE_BUDGET_S:
            self.inline_cost = seconds  # a probe: its own measure decides
        else:
            self.inline_cost = cost + _SMOOTHING * (seconds - cost)

    def record_pool(self, wall_seconds: float, cpu_seconds: float) -> None:
        self.pool_cost = _average(self.pool_cost, cpu_seconds)
        self.pool_wall = _average(self.pool_wall, wall_seconds)


def _average(current: float | None, value: float) -> float:
    return value if current is None else current + _SMOOTHING * (value - current)


class ModelRunner:
    def __init__(
        self,
        model: Model,
        *,
        executor: Executor,
        metrics: Metrics,
        max_queue_size: int = 1024,
        max_batch_size: int = 0,
        max_latency: float = 0.005,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.executor = executor
        self.max_queue_size = max_queue_size
        self.inflight = 0
        self._costs: dict[str, CostTracker] = {}
        self.batcher: AdaptiveBatcher | None = None
        if max_batch_size > 1 and isinstance(model, ArrayModel) and model.batchable:
            self.batcher = AdaptiveBatcher(
                self._infer_arrays,
                max_batch_size=max_batch_size,
                max_latency=max_latency,
                on_batch=self._record_batch,
            )

    # -- admission ---------------------------------------------------------------

    def admit(self) -> None:
        if self.inflight >= self.max_queue_size:
            self.metrics.observe_rejected(self.model.name)
            raise ServerOverloaded(
                f"model {self.model.name!r} has {self.inflight} requests queued "
                f"(limit {self.max_queue_size}); retry shortly"
            )
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1

    # -- calls -------------------------------------------------------------------

    async def infer_arrays(self, inputs: Arrays, method: str) -> Arrays:
        """The fast path of an :class:`ArrayModel`, through the batcher when on."""
        if self.batcher is not None:
            return await self.batcher.submit(inputs, method)
        self.metrics.observe_batch(self.model.name, _rows(inputs))
        return await self._infer_arrays(inputs, method)

    async def _infer_arrays(self, inputs: Arrays, method: str) -> Arrays:
        model = self.model
        assert isinstance(model, ArrayModel)
        result: Arrays = await self.call("infer_arrays", model.infer_arrays, inputs, method)
        return result

    async def call(self, key: str, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` inline or in the pool; coroutines are awaited on the loop."""
        if inspect.iscoroutinefunction(function):
            return await function(*args)
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = CostTracker()
        if cost.inline():
            started = time.perf_counter()
            result = function(*args)
            cost.record_inline(time.perf_counter() - started)
        else:
            loop = asyncio.get_running_loop()
            result, wall, cpu = await loop.run_in_executor(self.executor, _timed, function, args)
            cost.record_pool(wall, cpu)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _record_batch(self, rows: int) -> None:
        self.metrics.observe_batch(self.model.name, rows)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        closer = getattr(self.model, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:  # closing must not fail an unload
                log.warning("closing model %r failed", self.model.name, exc_info=True)


def _timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, float, float]:
    """``function(*args)``, its wall time and the CPU time this thread spent on it."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def _rows(inputs: Arrays) -> int:
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0
