"""The pieces of a pod's log request: which container, which bytes (tail, since), the
time of each line, and the STATUS column kubectl shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ketch.core.errors import InvalidSpec
from ketch.server.pod_logs import Clock, Window, choose_container, since_start, tail_start
from ketch.server.pods import pod_status_text

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def test_tail_start_counts_lines_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"old run\na\nb\nc\n")
    start = len(b"old run\n")
    size = log.stat().st_size
    assert tail_start(log, start, size, 2) == size - len(b"b\nc\n")
    assert tail_start(log, start, size, 10) == start  # never before the run began
    assert tail_start(log, start, size, 0) == size
    log.write_bytes(b"a\nb\npartial")
    assert tail_start(log, 0, log.stat().st_size, 1) == len(b"a\nb\n")


def test_since_start_uses_the_growth_marks(tmp_path: Path) -> None:
    window = Window(tmp_path / "x.log", 10, None)
    marks = [
        (10, ns(T0)),
        (20, ns(T0 + timedelta(seconds=10))),
        (30, ns(T0 + timedelta(seconds=20))),
    ]
    # lines up to offset 20 were all written 10 s after T0: a cutoff after that skips them
    assert since_start(marks, window, T0 + timedelta(seconds=15), T0, None) == 20
    assert since_start(marks, window, T0 - timedelta(seconds=1), T0, None) == 10  # all of it
    ended = Window(window.path, 10, 30)
    late = T0 + timedelta(seconds=60)
    assert since_start(marks, ended, late, T0, T0 + timedelta(seconds=20)) == 30  # nothing


def test_each_line_is_stamped_with_the_first_mark_past_it() -> None:
    clock = Clock([(0, ns(T0)), (8, ns(T0 + timedelta(seconds=3)))], T0 + timedelta(seconds=9))
    assert clock.at(4) == "2026-01-02T03:04:08.000000000Z"
    assert clock.at(8) == "2026-01-02T03:04:08.000000000Z"
    assert clock.at(12) == "2026-01-02T03:04:14.000000000Z"  # after the last mark: its end


def pod(*names: str, default: str | None = None) -> dict:
    annotations = {"kubectl.kubernetes.io/default-container": default} if default else {}
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": n} for n in names]},
    }


def test_the_container_of_a_log_request() -> None:
    assert choose_container(pod("main"), None) == "main"
    assert choose_container(pod("main", "side"), "side") == "side"
    assert choose_container(pod("main", "side", default="side"), None) == "side"
    with pytest.raises(InvalidSpec, match=r"choose one of: \[main side\]"):
        choose_container(pod("main", "side"), None)
    with pytest.raises(InvalidSpec, match="container other is not valid for pod p"):
        choose_container(pod("main"), "other")


def test_the_status_column_as_kubectl_prints_it() -> None:
    def shown(phase: str, *states: dict, deleting: bool = False) -> str:
        metadata = {"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {}
        statuses = [{"state": s, "ready": "running" in s} for s in states]
        return pod_status_text(
            {"metadata": metadata, "status": {"phase": phase, "containerStatuses": statuses}}
        )

    assert shown("Running", {"running": {}}) == "Running"
    assert shown("Succeeded", {"terminated": {"reason": "Completed", "exitCode": 0}}) == "Completed"
    assert shown("Failed", {"terminated": {"exitCode": 2}}) == "ExitCode:2"
    assert shown("Running", {"waiting": {"reason": "CrashLoopBackOff"}}) == "CrashLoopBackOff"
    assert shown("Running", {"running": {}}, deleting=True) == "Terminating"
