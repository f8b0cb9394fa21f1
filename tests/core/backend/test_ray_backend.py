"""The Ray backend on a real 3-node Ray cluster (see conftest.py): processes run on
the node they are placed on, their output and exit codes come back to Ketch's log
files, cancel stops the whole process group, gangs become placement groups."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ketch.core.backend import Placement, ProcessSpec, Request
from ketch.core.errors import BackendError
from tests.core.backend.conftest import RAY, RayCluster
from tests.waiting import wait_for

if TYPE_CHECKING:
    from ketch.core.backend.ray import RayBackend

pytestmark = RAY
PY = sys.executable


def key() -> tuple[str, str]:
    return ("test", uuid.uuid4().hex[:10])


def test_a_process_runs_on_the_node_it_is_placed_on_and_its_output_comes_back(
    ray_backend: RayBackend, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    chosen = ray_cluster.nodes[2]
    gang = key()
    admitted, why = ray_backend.admit(gang, Request.gang([Request(0.1, node=chosen)]))
    assert admitted, why
    script = (
        "import os, sys\n"
        "print('out', os.environ['GREETING'], os.getcwd(), os.nice(0))\n"
        "print('err line', file=sys.stderr)\n"
        "sys.stdout.write('x' * 300000)\n"
        "sys.exit(7)\n"
    )
    try:
        handle = ray_backend.start(
            ProcessSpec(
                "greet",
                [PY, "-c", script],
                env={"GREETING": "hello"},
                cwd=tmp_path,
                stdout_path=tmp_path / "out.log",
                stderr_path=tmp_path / "err.log",
                placement=Placement(gang, 0),
            )
        )
        assert handle.node == chosen
        assert handle.host == "127.0.0.1"
        assert handle.wait(120) == 7
    finally:
        ray_backend.release(gang)
    out = (tmp_path / "out.log").read_text()
    # at the niceness Ketch's own processes have (the node's), not Ray workers' 15
    assert out.startswith(f"out hello {tmp_path} {os.nice(0)}\n")
    assert out.endswith("x" * 300000)  # all of it, in order
    assert (tmp_path / "err.log").read_text() == "err line\n"


def test_one_log_holds_both_streams_and_exit_callbacks_fire(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    log = tmp_path / "both.log"
    ended: list[int | None] = []
    handle = ray_backend.start(
        ProcessSpec(
            "both",
            ["sh", "-c", "echo one; echo two >&2; echo three"],
            stdout_path=log,
            stderr_path=log,
        )
    )
    handle.add_exit_callback(lambda h: ended.append(h.poll()))
    assert handle.wait(120) == 0
    wait_for(lambda: ended == [0], 10, what="the exit callback")
    assert log.read_text().splitlines() == ["one", "two", "three"]
    assert handle.node in {n.node_id for n in ray_backend.nodes()}


def test_cancel_stops_the_whole_group_after_the_grace(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    log = tmp_path / "stubborn.log"
    # ignores SIGTERM, and has a child of its own in its group
    stubborn = ray_backend.start(
        ProcessSpec(
            "stubborn",
            ["bash", "-c", "trap '' TERM; sleep 300 & echo child $!; wait"],
            stdout_path=log,
            stderr_path=log,
        )
    )
    child = int(wait_for(lambda: _child(log), 60, what="the child's pid").split()[1])
    assert Path(f"/proc/{child}").exists()  # the cluster runs on this machine
    stubborn.cancel(grace=1.0)
    assert stubborn.poll() == -signal.SIGKILL
    wait_for(lambda: not _running(child), 10, what="the child to be killed with its group")

    polite = ray_backend.start(ProcessSpec("polite", ["sleep", "300"]))
    wait_for(lambda: polite.pid is not None and _running(polite.pid), 30, what="sleep")
    polite.cancel(grace=30.0)
    assert polite.poll() == -signal.SIGTERM  # it ended at SIGTERM, long before the grace


def _child(log: Path) -> str | None:
    text = log.read_text() if log.exists() else ""
    return next((line for line in text.splitlines() if line.startswith("child ")), None)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_spread_gang_lands_on_several_nodes_and_a_pack_gang_on_one(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    spread, pack = key(), key()
    light = [Request(0.05)] * 4
    try:
        ok, why = ray_backend.admit(spread, Request.gang(light, "SPREAD"))
        assert ok, why
        handles = [
            ray_backend.start(
                ProcessSpec(
                    f"replica {i}",
                    [PY, "-c", "import os; print(os.getpid())"],
                    stdout_path=tmp_path / f"r{i}.log",
                    stderr_path=tmp_path / f"r{i}.log",
                    placement=Placement(spread, i),
                )
            )
            for i in range(4)
        ]
        assert [h.wait(120) for h in handles] == [0, 0, 0, 0]
        nodes = {h.node for h in handles}
        assert len(nodes) >= 2, nodes
        for i, handle in enumerate(handles):
            assert (tmp_path / f"r{i}.log").read_text().strip() == str(handle.pid)
        # what a replica tells the others (MASTER_ADDR), and a port free on its node
        port = ray_backend.reserve_port(0, Placement(spread, 1))
        assert ray_backend.host_of(Placement(spread, 1)) == "127.0.0.1"
        again = ray_backend.reserve_port(port, Placement(spread, 2))
        assert again != port  # a port is handed out once, whichever node holds it
        ray_backend.release_ports([port, again])
        ok, why = ray_backend.admit(pack, Request.gang(light, "PACK"))
        assert ok, why
        packed = [
            ray_backend.start(ProcessSpec("packed", ["true"], placement=Placement(pack, i)))
            for i in range(4)
        ]
        assert len({h.node for h in packed}) == 1
        assert [h.wait(120) for h in packed] == [0, 0, 0, 0]
    finally:
        ray_backend.release(spread)
        ray_backend.release(pack)


def test_a_gang_that_cannot_fit_waits_saying_why(ray_backend: RayBackend) -> None:
    too_big, too_many, unknown = key(), key(), key()
    try:
        ok, why = ray_backend.admit(too_big, Request.gang([Request(0.5), Request(2.0)]))
        assert not ok
        assert "member 1 asks cpu=2" in why and "more than any of the cluster's 3 nodes" in why
        ok, why = ray_backend.admit(too_many, Request.gang([Request(0.05)] * 4, "STRICT_SPREAD"))
        assert not ok
        assert "node of its own" in why and "the cluster has 3" in why
        ok, why = ray_backend.admit(unknown, Request.gang([Request(0.05, node="f" * 56)]))
        assert not ok and "f" * 56 in why and "not an alive node" in why
        # asking again keeps waiting, with the same reason
        assert ray_backend.admit(too_big, Request.gang([Request(0.5), Request(2.0)]))[0] is False
        # a member placed on a gang that is not admitted runs where there is room
        handle = ray_backend.start(
            ProcessSpec("unplaced", ["true"], placement=Placement(too_big, 0))
        )
        assert handle.wait(120) == 0
    finally:
        for group in (too_big, too_many, unknown):
            ray_backend.release(group)


def test_a_process_with_a_reserved_port_starts_on_that_ports_node(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    port = ray_backend.reserve_port()
    try:
        log = tmp_path / "server.log"
        script = (
            "import socket, sys\n"
            "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); print('bound')\n"
        )
        handle = ray_backend.start(
            ProcessSpec(
                "server",
                [PY, "-c", script, str(port)],
                ports=(port,),
                stdout_path=log,
                stderr_path=log,
            )
        )
        assert handle.wait(120) == 0, log.read_text()
        assert log.read_text() == "bound\n"
    finally:
        ray_backend.release_ports([port])


def test_start_errors_name_the_node_and_the_problem(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    with pytest.raises(BackendError, match="no-such-program.*not found"):
        ray_backend.start(ProcessSpec("missing", ["no-such-program-ketch"]))
    with pytest.raises(BackendError, match="does not exist on this node"):
        ray_backend.start(ProcessSpec("nowhere", ["true"], cwd=tmp_path / "absent"))
    assert all(h.spec.name not in ("missing", "nowhere") for h in ray_backend.running())


def test_a_lost_runner_ends_its_processes_and_a_new_one_takes_its_node(
    ray_backend: RayBackend, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    import ray

    gang = key()
    node = ray_cluster.nodes[1]
    ok, why = ray_backend.admit(gang, Request.gang([Request(0.05, node=node)] * 2))
    assert ok, why
    try:
        log = tmp_path / "doomed.log"
        doomed = ray_backend.start(
            ProcessSpec(
                "doomed",
                ["sleep", "300"],
                stdout_path=log,
                stderr_path=log,
                placement=Placement(gang, 0),
            )
        )
        wait_for(lambda: doomed.pid is not None and _running(doomed.pid), 30, what="sleep")
        ray.kill(doomed.runner.actor)  # as when its node goes: the runner's process dies
        assert doomed.wait(60) == -signal.SIGKILL
        assert f"Ray node {node} (127.0.0.1) was lost" in log.read_text()
        wait_for(lambda: not _running(doomed.pid or 0), 30, what="the orphan to be killed")
        again = ray_backend.start(ProcessSpec("again", ["true"], placement=Placement(gang, 1)))
        assert again.node == node and again.wait(120) == 0
    finally:
        ray_backend.release(gang)
