"""A pod's logs, as the kubelet serves them through the API server::

    GET /api/v1/namespaces/{ns}/pods/{name}/log?container=C&follow=true&previous=true
        &sinceSeconds=N&sinceTime=T&timestamps=true&tailLines=N&limitBytes=N

Plain text: the output of one container's current run (``previous``: of the run
before it, for a restarted container), from the log file its pod names (never a
path from the request; read through :mod:`ketch.core.logfiles`, which serves only
what lies inside Ketch's log folders). ``follow`` streams new output until that run
ends (its process exits or is restarted, or the pod goes). A pod with several
containers needs ``container`` (or a ``kubectl.kubernetes.io/default-container``
annotation), as Kubernetes does.

Lines carry no time of their own (a process writes its log itself): their time is
when Ketch saw the log grow past them (its controllers note that each time they look
at a pod, see :mod:`ketch.core.store.pods`), so ``sinceSeconds``/``sinceTime`` may
include lines written up to one look before the time asked for, and ``timestamps``
prefixes each line with that time (RFC 3339, nanoseconds).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.logfiles import CHUNK, POLL, REFUSED, confined, read_chunk
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.store.pods import TIMES_SUFFIX, LogRef, PodLogs, PodStore, parse_times
from ketch.core.timestamps import parse_time, time_or_none, utcnow
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.state import ApiState, api_state

router = APIRouter(tags=["pods"], responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


@dataclass
class Window:
    """The bytes of a log to serve: ``path`` from ``start`` up to ``end`` (``None``:
    to its end, and on while following)."""

    path: Path
    start: int
    end: int | None


def choose_container(pod: dict[str, Any], asked: str | None) -> str:
    """The container a log request is about (``InvalidSpec`` as Kubernetes words it)."""
    name = pod["metadata"]["name"]
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    if asked:
        if asked not in names:
            raise InvalidSpec(
                f"container {asked} is not valid for pod {name}; its containers are: "
                f"{' '.join(names) or 'none'}",
                field="container",
            )
        return asked
    default = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER)
    if default in names:
        return str(default)
    if len(names) == 1:
        return names[0]
    raise InvalidSpec(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
        field="container",
    )


def container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def run_times(status: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """When the container's current run started and (if it has) ended."""
    state = status.get("state") or {}
    if "running" in state:
        return time_or_none(state["running"].get("startedAt")), None
    if "terminated" in state:
        ended = state["terminated"]
        return time_or_none(ended.get("startedAt")), time_or_none(ended.get("finishedAt"))
    last = (status.get("lastState") or {}).get("terminated") or {}
    return time_or_none(last.get("startedAt")), time_or_none(last.get("finishedAt"))


def read_all(path: Path) -> bytes:
    out = bytearray()
    while chunk := read_chunk(path, len(out)):
        out += chunk
    return bytes(out)


def load_marks(path: Path) -> list[tuple[int, int]]:
    """The growth marks of the log at ``path`` (none when it has none)."""
    times = confined(str(path) + TIMES_SUFFIX)
    if times is None:
        return []
    return parse_times(read_all(times).decode("ascii", errors="replace"))


def size_of(path: Path) -> int:
    size = 0
    while chunk := read_chunk(path, size):
        size += len(chunk)
    return size


def tail_start(path: Path, low: int, high: int, lines: int) -> int:
    """Where the last ``lines`` lines of ``path[low:high]`` begin."""
    if lines <= 0:
        return high
    position, count = high, 0
    while position > low:
        begin = max(low, position - CHUNK)
        block = read_chunk(path, begin)[: position - begin]
        if not block:
            break
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) != -1:
            if begin + index != high - 1:  # the newline ending the window's last line
                count += 1
                if count == lines:
                    return begin + index + 1
        position = begin
    return low


def since_start(
    marks: list[tuple[int, int]],
    window: Window,
    cutoff: datetime,
    started: datetime | None,
    ended: datetime | None,
) -> int:
    """Where the output written at or after ``cutoff`` begins in ``window`` (as far as
    the marks tell: at most one look earlier)."""
    if started is not None and started >= cutoff:
        return window.start
    end = window.end
    if ended is not None and ended < cutoff and end is not None:
        return end
    limit = cutoff.timestamp() * 1e9
    start = window.start
    for offset, nanos in marks:
        if nanos < limit and offset > start and (end is None or offset <= end):
            start = offset
    return start


class Clock:
    """The time each line was written by, from the log's growth marks."""

    def __init__(self, marks: list[tuple[int, int]], ended: datetime | None) -> None:
        self.offsets = [offset for offset, _nanos in marks]
        self.nanos = [nanos for _offset, nanos in marks]
        self.ended = ended

    def at(self, offset: int) -> str:
        index = bisect.bisect_left(self.offsets, offset)
        if index < len(self.offsets):
            nanos = self.nanos[index]
        else:
            moment = self.ended or utcnow()
            nanos = int(moment.timestamp() * 1_000_000) * 1000
        seconds, rest = divmod(nanos, 1_000_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{rest:09d}Z"


@dataclass
class LogPlan:
    """What a log request serves: which bytes, from which run, and how."""

    pod: dict[str, Any]
    container: str
    ref: LogRef
    window: Window | None  # None: the log lies outside Ketch's log folders
    follow: bool
    clock: Clock | None
    limit_bytes: int | None


async def plan_log(
    found: PodLogs,
    container: str,
    *,
    follow: bool,
    previous: bool,
    since: datetime | None,
    timestamps: bool,
    tail_lines: int | None,
    limit_bytes: int | None,
) -> LogPlan:
    """Check a log request and work out what it serves (``InvalidSpec`` for a container
    that has not started, or has no previous run)."""
    pod = found.manifest
    name = pod["metadata"]["name"]
    status = container_status(pod, container)
    ref: LogRef | None = found.logs.get(container)
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    if previous:
        if ref is None or ref.previous is None:
            raise InvalidSpec(
                f'previous terminated container "{container}" in pod "{name}" not found',
                field="previous",
            )
        follow = False
    elif ref is None or (waiting and not status.get("lastState")):
        reason = waiting.get("reason") or "ContainerCreating"
        raise InvalidSpec(
            f'container "{container}" in pod "{name}" is waiting to start: {reason}',
            field="container",
        )
    path = confined(ref.path)
    if path is None:
        return LogPlan(pod, container, ref, None, False, None, limit_bytes)
    if previous:
        assert ref.previous is not None
        window = Window(path, ref.previous, ref.start)
        last = (status.get("lastState") or {}).get("terminated") or {}
        started, ended = time_or_none(last.get("startedAt")), time_or_none(last.get("finishedAt"))
    else:
        window = Window(path, ref.start, None)
        started, ended = run_times(status)
        if "running" not in state:
            follow = False  # the run has ended: there is nothing more to wait for
    marks = await run_in_threadpool(load_marks, path) if since or timestamps else []
    if since is not None:
        window.start = since_start(marks, window, since, started, ended)
    if tail_lines is not None:
        high = window.end if window.end is not None else await run_in_threadpool(size_of, path)
        window.start = await run_in_threadpool(tail_start, path, window.start, high, tail_lines)
    clock = Clock(marks, ended) if timestamps else None
    return LogPlan(pod, container, ref, window, follow, clock, limit_bytes)


async def stream_log(pods: PodStore, state: ApiState, plan: LogPlan) -> AsyncIterator[bytes]:
    """The log bytes ``plan`` serves; while following, new ones until the run ends."""
    window = plan.window
    if window is None:
        yield REFUSED
        return
    path, clock, limit_bytes, follow = window.path, plan.clock, plan.limit_bytes, plan.follow
    metadata = plan.pod["metadata"]
    sent = 0
    pending = b""
    position = window.start

    def emit(data: bytes, end_offset: int) -> bytes:
        """``data`` (complete lines ending at ``end_offset``, or the last bytes) as sent."""
        if clock is None:
            return data
        out = bytearray()
        offset = end_offset - len(data)
        for line in data.splitlines(keepends=True):
            offset += len(line)
            out += clock.at(offset).encode() + b" " + line
        return bytes(out)

    while True:
        chunk = await run_in_threadpool(read_chunk, path, position)
        if window.end is not None:
            chunk = chunk[: max(0, window.end - position)]
        if chunk:
            position += len(chunk)
            data = pending + chunk
            if clock is not None:
                cut = data.rfind(b"\n") + 1
                data, pending = data[:cut], data[cut:]
            out = emit(data, position - len(pending))
            if limit_bytes is not None and sent + len(out) >= limit_bytes:
                yield out[: limit_bytes - sent]
                return
            if out:
                sent += len(out)
                yield out
            continue
        if not follow or state.stopping.is_set():
            break
        try:
            latest = await run_in_threadpool(pods.logs_of, metadata["namespace"], metadata["name"])
        except NotFound:
            follow = False  # the pod is gone: read what is left
            continue
        if latest.manifest["metadata"]["uid"] != metadata["uid"]:
            break  # a new pod of the same name: the one followed is gone
        now = latest.logs.get(plan.container)
        current = container_status(latest.manifest, plan.container)
        if now is not None and now.start != plan.ref.start:
            window.end = now.start  # the run followed ended and another began
            follow = False
            continue
        if "running" not in (current.get("state") or {}):
            follow = False  # read what it wrote last, then stop
            if clock is not None:
                clock.ended = run_times(current)[1] or clock.ended
            continue
        await asyncio.sleep(POLL)
    if pending:
        out = emit(pending, position)
        if limit_bytes is not None:
            out = out[: max(0, limit_bytes - sent)]
        yield out


@router.get(
    "/api/v1/namespaces/{namespace}/pods/{name}/log",
    summary="A pod's container log (plain text; follow streams until its run ends)",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def read_pod_log(
    namespace: str,
    name: str,
    state: State,
    container: Annotated[
        str | None, Query(description="The container (needed with several)")
    ] = None,
    follow: Annotated[bool, Query(description="Stream new output until the run ends")] = False,
    previous: Annotated[bool, Query(description="The run before the current one")] = False,
    since_seconds: Annotated[
        int | None, Query(alias="sinceSeconds", ge=1, description="Only output this recent")
    ] = None,
    since_time: Annotated[
        str | None, Query(alias="sinceTime", description="Only output from this time (RFC 3339)")
    ] = None,
    timestamps: Annotated[bool, Query(description="Prefix each line with its time")] = False,
    tail_lines: Annotated[
        int | None, Query(alias="tailLines", ge=0, description="Only the last N lines")
    ] = None,
    limit_bytes: Annotated[
        int | None, Query(alias="limitBytes", ge=1, description="At most this many bytes")
    ] = None,
    pretty: Annotated[str | None, Query(include_in_schema=False)] = None,
    insecure: Annotated[
        str | None, Query(alias="insecureSkipTLSVerifyBackend", include_in_schema=False)
    ] = None,
) -> StreamingResponse:
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    since: datetime | None = None
    if since_seconds is not None and since_time is not None:
        raise InvalidSpec("give sinceSeconds or sinceTime, not both", field="sinceSeconds")
    if since_seconds is not None:
        since = utcnow() - timedelta(seconds=since_seconds)
    elif since_time is not None:
        try:
            since = parse_time(since_time)
        except ValueError as exc:
            raise InvalidSpec(str(exc), field="sinceTime") from None
    pods = PodStore(state.database)
    found = await run_in_threadpool(pods.logs_of, namespace, name)
    plan = await plan_log(
        found,
        choose_container(found.manifest, container),
        follow=follow,
        previous=previous,
        since=since,
        timestamps=timestamps,
        tail_lines=tail_lines,
        limit_bytes=limit_bytes,
    )
    return StreamingResponse(
        stream_log(pods, state, plan),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
