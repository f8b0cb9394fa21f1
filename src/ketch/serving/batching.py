"""Adaptive batching: concurrent requests to one model merged into one model call.

Requests queue up; the first one opens a batch, which closes when it holds
``max_batch_size`` rows or ``max_latency`` has passed since it opened. Requests
whose inputs agree (same names, dtypes and trailing shapes, same method) are
concatenated along axis 0, the model runs once, and each request gets its own
rows of every output back, in order. One batch runs at a time per model; the
next one fills while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from ketch.serving.errors import InferenceError

Arrays = dict[str, np.ndarray]
RunArrays = Callable[[Arrays, str], Awaitable[Arrays]]


@dataclass(slots=True)
class _Item:
    inputs: Arrays
    method: str
    rows: int
    future: asyncio.Future[Arrays]

    def key(self) -> tuple[object, ...]:
        return (
            self.method,
            tuple((n, a.dtype.str, a.shape[1:]) for n, a in self.inputs.items()),
        )


def rows_of(inputs: Arrays) -> int:
    """The batch dimension shared by every input (1 for scalars)."""
    rows = -1
    for array in inputs.values():
        count = array.shape[0] if array.ndim else 1
        if rows not in (-1, count):
            return 0
        rows = count
    return max(rows, 0)


class AdaptiveBatcher:
    def __init__(
        self,
        run: RunArrays,
        *,
        max_batch_size: int,
        max_latency: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_latency = max(max_latency, 0.0)
        self._on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def submit(self, inputs: Arrays, method: str) -> Arrays:
        rows = rows_of(inputs)
        loop = asyncio.get_running_loop()
        if rows == 0 or rows >= self.max_batch_size:
            # Nothing to merge with (or inputs of disagreeing lengths): run alone.
            return await self._run(inputs, method)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._loop())
        future: asyncio.Future[Arrays] = loop.create_future()
        self._pending.append(_Item(inputs, method, rows, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(InferenceError("the model was unloaded"))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            if not self._pending:
                wakeup.clear()
                await wakeup.wait()
            deadline = loop.time() + self.max_latency
            batch = [self._pending.popleft()]
            rows = batch[0].rows
            while rows < self.max_batch_size:
                if self._pending:
                    if rows + self._pending[0].rows > self.max_batch_size:
                        break
                    item = self._pending.popleft()
                    batch.append(item)
                    rows += item.rows
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), remaining)
            await self._execute(batch)

    async def _execute(self, batch: list[_Item]) -> None:
        groups: dict[tuple[object, ...], list[_Item]] = {}
        for item in batch:
            if not item.future.cancelled():
                groups.setdefault(item.key(), []).append(item)
        for items in groups.values():
            try:
                await self._run_group(items)
            except Exception as exc:  # noqa: BLE001 - the model's code may raise anything: every caller of the group gets it
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _run_group(self, items: list[_Item]) -> None:
        total = sum(item.rows for item in items)
        if self._on_batch is not None:
            self._on_batch(total)
        if len(items) == 1:
            merged = items[0].inputs
        else:
            merged = {
                name: np.concatenate([item.inputs[name] for item in items])
                for name in items[0].inputs
            }
        outputs = await self._run(merged, items[0].method)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise InferenceError(
                    f"output {name!r} has shape {list(array.shape)}; batching needs "
                    f"{total} rows (one per input row): turn batching off for this model"
                )
        start = 0
        for item in items:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result({name: a[start:end] for name, a in outputs.items()})
            start = end
