"""The Ray backend on a real 3-node Ray cluster (see conftest.py): processes run on
the node they are placed on, their output and exit codes come back to Ketch's log
files, cancel stops the whole process group, gangs become placement groups; Python
processes fork from their node's warm interpreter, and a node's GPUs are handed out
one process at a time."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ketch.core.backend import (
    Placement,
    ProcessSpec,
    Request,
    Resources,
    RunAs,
    cgroups,
    command_entry,
)
from ketch.core.backend.ray.runner import Launch, ProcessRunner, node_devices
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


# -- warm interpreters ---------------------------------------------------------------

#: what a Python process says about itself: its output, how it was started (its
#: parent's command line) and what it runs with
REPORT = (
    "import os, resource, sys\n"
    "parent = open(f'/proc/{os.getppid()}/cmdline').read().replace(chr(0), ' ')\n"
    "print('parent', os.getppid(), 'forkserver.py serve' in parent)\n"
    "print('env', os.environ.get('GREETING'), repr(os.environ.get('CUDA_VISIBLE_DEVICES')),\n"
    "      any(k.startswith('RAY_') for k in os.environ))\n"
    "print('where', os.getcwd(), os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())\n"
    "print('who', os.getuid(), os.getgid(), os.getgroups(), os.nice(0))\n"
    "print('limit', resource.getrlimit(resource.RLIMIT_AS)[0])\n"
    "print('to stderr', file=sys.stderr)\n"
    "sys.exit(int(sys.argv[1]))\n"
)


def python_spec(
    name: str, script: str, *args: str, preload: tuple[str, ...] = (), **kw: Any
) -> ProcessSpec:
    """A ``python -c`` process as a controller makes it: with its fork-server entry."""
    command = [PY, "-c", script, *args]
    entry = command_entry(command, PY)
    assert entry is not None
    if preload:
        entry = dataclasses.replace(entry, preload=(*entry.preload, *preload))
    return ProcessSpec(name, command, python=entry, **kw)


def report(path: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in path.read_text().splitlines()}


def test_a_python_process_is_forked_from_its_nodes_warm_interpreter_as_a_new_one_would_run(
    ray_backend: RayBackend, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    gang = key()
    node = ray_cluster.nodes[1]
    ok, why = ray_backend.admit(gang, Request.gang([Request(0.05, node=node)] * 3))
    assert ok, why
    try:
        handles = [
            ray_backend.start(
                python_spec(
                    f"warm {i}",
                    REPORT,
                    str(i + 3),
                    env={"GREETING": f"hello{i}"},
                    cwd=tmp_path,
                    stdout_path=tmp_path / f"{i}.out",
                    stderr_path=tmp_path / f"{i}.err",
                    resources=Resources(memory_limit="3Gi"),
                    placement=Placement(gang, i),
                )
            )
            for i in range(2)
        ]
        assert [h.wait(120) for h in handles] == [3, 4]
        assert all(h.forked and h.node == node for h in handles)
        seen = [report(tmp_path / f"{i}.out") for i in range(2)]
        for i, said in enumerate(seen):
            assert said["parent"][1] == "True"  # forked by the warm interpreter
            assert said["env"] == [f"hello{i}", "''", "False"]  # no GPU asked: none seen
            assert said["where"] == [str(tmp_path), "True", "True"]  # a group of its own
            assert said["who"][:2] == [str(os.getuid()), str(os.getgid())]
            assert said["who"][-1] == str(os.nice(0))  # at the node's priority
            assert said["limit"] == [str(3 * 2**30)]
            assert (tmp_path / f"{i}.err").read_text() == "to stderr\n"
        assert seen[0]["parent"][0] == seen[1]["parent"][0]  # one warm interpreter

        # as another OS user (the runner is root here: it may change identity)
        log = tmp_path / "other.log"
        other = ray_backend.start(
            python_spec(
                "other user",
                REPORT,
                "0",
                stdout_path=log,
                stderr_path=log,
                run_as=RunAs(65534, 65534),
                placement=Placement(gang, 2),
            )
        )
        assert other.wait(120) == 0 and other.forked
        said = report(log)
        assert said["who"][:3] == ["65534", "65534", "[]"]
        assert said["to"] == ["stderr"]  # one log for both streams
    finally:
        ray_backend.release(gang)


def test_cancel_stops_the_group_of_a_forked_process(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    log = tmp_path / "stubborn.log"
    script = (
        "import signal, subprocess\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "print('child', child.pid, flush=True)\n"
        "child.wait()\n"
    )
    stubborn = ray_backend.start(python_spec("stubborn", script, stdout_path=log, stderr_path=log))
    assert stubborn.forked
    child = int(wait_for(lambda: _child(log), 60, what="the child's pid").split()[1])
    stubborn.cancel(grace=1.0)
    assert stubborn.poll() == -signal.SIGKILL
    wait_for(lambda: not _running(child), 10, what="the child to be killed with its group")


def test_a_python_process_starts_new_when_its_warm_interpreter_cannot_start(
    ray_backend: RayBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "cold.log"
    with caplog.at_level(logging.WARNING, logger="ketch.core.backend.ray"):
        cold = ray_backend.start(
            python_spec(
                "cold",
                REPORT,
                "2",
                preload=("ketch_no_such_module",),
                stdout_path=log,
                stderr_path=log,
            )
        )
    assert cold.wait(120) == 2
    assert not cold.forked
    assert report(log)["parent"][1] == "False"
    assert any(
        "ketch_no_such_module" in r.getMessage() and "warm interpreter" in r.getMessage()
        for r in caplog.records
    )


def test_prewarm_readies_a_warm_interpreter_on_every_node(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    assert ray_backend.abilities.prewarm
    assert ray_backend.prewarm(PY, ("ketch.core.backend", "json")).result(180) is True
    log = tmp_path / "warm.log"
    handle = ray_backend.start(
        python_spec(
            "prewarmed",
            "import sys; print(sorted(m for m in sys.modules if m == 'json'))",
            preload=("json",),
            stdout_path=log,
            stderr_path=log,
        )
    )
    assert handle.wait(120) == 0 and handle.forked
    assert log.read_text() == "['json']\n"  # imported before it was asked


# -- GPUs ------------------------------------------------------------------------------


def test_node_devices_are_those_the_node_lists_or_counted_from_0() -> None:
    assert node_devices(2, None) == ["0", "1"]
    assert node_devices(2, "") == ["0", "1"]
    assert node_devices(2, "3, 5,7") == ["3", "5"]
    assert node_devices(3, "3") == ["0", "1", "2"]
    assert node_devices(0, "1") == []


class Watched:
    """A process runner actor on a node, and what its processes said, by task."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.ack = 0
        self.out: dict[str, str] = {}
        self.codes: dict[str, int] = {}

    def start(self, task: str, command: list[str], gpus: int = 0, **kw: Any) -> dict[str, Any]:
        import ray

        launch = Launch(task, command, kw.pop("env", {}), None, True, gpus=gpus, **kw)
        return dict(ray.get(self.actor.start.remote(launch), timeout=60))

    def said(self, task: str) -> str | None:
        import ray

        self.ack, events = ray.get(self.actor.pull.remote(self.ack, 0.5), timeout=60)
        for _seq, name, kind, data in events:
            if kind == "exit":
                self.codes[name] = int(data)
            else:
                self.out[name] = self.out.get(name, "") + data.decode()
        return self.out.get(task)


def test_a_runner_hands_out_its_nodes_gpus_one_process_at_a_time(
    ray_backend: RayBackend, ray_cluster: RayCluster
) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # the test cluster's nodes have no GPU: this runner is told its node has 2
    node = f"{ray_cluster.nodes[2]}-test-{uuid.uuid4().hex[:6]}"
    actor: Any = (
        ray.remote(ProcessRunner)
        .options(
            num_cpus=0,
            max_concurrency=8,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray_cluster.nodes[2], soft=False),
        )
        .remote(node, 2, 2)
    )
    runner = Watched(actor)
    show = 'echo "[$CUDA_VISIBLE_DEVICES] [${NVIDIA_VISIBLE_DEVICES-unset}]"; '
    try:
        assert "pid" in runner.start("a", ["sh", "-c", show + "exec sleep 300"], gpus=1)
        assert "pid" in runner.start("b", ["sh", "-c", show + "exec sleep 300"], gpus=1)
        a = str(wait_for(lambda: runner.said("a"), 30, what="a's devices"))
        b = str(wait_for(lambda: runner.said("b"), 30, what="b's devices"))
        assert sorted([a, b]) == ["[0] [0]\n", "[1] [1]\n"]
        refused = runner.start("c", ["true"], gpus=1)
        assert refused["kind"] == "gpu"
        assert (
            "asks for 1 GPU(s)" in refused["error"]
            and "0 of the node's 2 are free" in refused["error"]
        )
        # none asked: none seen, unless its own environment says otherwise
        runner.start("d", ["sh", "-c", show])
        runner.start("e", ["sh", "-c", show], env={"CUDA_VISIBLE_DEVICES": "7"})
        wait_for(lambda: runner.said("") is None and {"d", "e"} <= set(runner.codes), 30)
        assert runner.out["d"].startswith("[] ")
        assert runner.out["e"].startswith("[7] ")
        # a's device is free again once a has ended; a forked process gets it too
        ray.get(actor.cancel.remote("a", 5.0), timeout=60)
        wait_for(lambda: runner.said("a") and "a" in runner.codes, 30, what="a's exit")
        command = [PY, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
        started = runner.start("f", command, gpus=1, python=command_entry(command, PY))
        assert started["forked"] is True
        wait_for(lambda: runner.said("f") is not None and "f" in runner.codes, 60, what="f")
        assert (runner.out["f"], runner.codes["f"]) == (a[1] + "\n", 0)
        refused = runner.start("g", ["true"], gpus=2)  # b still holds the other
        assert "asks for 2 GPU(s)" in refused["error"]
        assert "1 of the node's 2 are free" in refused["error"]
    finally:
        ray.get(actor.shutdown.remote(2.0), timeout=60)
        ray.kill(actor)
        shutil.rmtree(Path(tempfile.gettempdir()) / "ketch-gpus" / node, ignore_errors=True)


def test_a_process_asking_for_gpus_the_cluster_lacks_does_not_start(
    ray_backend: RayBackend, ray_cluster: RayCluster
) -> None:
    gpu = Resources(accelerator_count=1)
    with pytest.raises(BackendError, match="no alive node of the Ray cluster has 1 GPU"):
        ray_backend.start(ProcessSpec("greedy", ["true"], resources=gpu))
    gang = key()
    node = ray_cluster.nodes[0]
    ok, why = ray_backend.admit(gang, Request.gang([Request(0.05, node=node)]))
    assert ok, why
    try:
        with pytest.raises(BackendError, match=f"on Ray node {node} .*the node has none"):
            ray_backend.start(
                ProcessSpec("placed", ["true"], resources=gpu, placement=Placement(gang, 0))
            )
    finally:
        ray_backend.release(gang)


def test_a_cpu_limit_is_applied_on_the_node_where_its_cgroups_allow(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    # a busy loop under a 0.2-core limit: held to about a fifth of the wall time where
    # the node's cgroup CPU controller is writable, recorded only elsewhere (as locally)
    burn = (
        "import time\n"
        "start = time.monotonic()\n"
        "while time.monotonic() - start < 1.0:\n"
        "    pass\n"
        "print(time.process_time() / (time.monotonic() - start))\n"
    )
    out = tmp_path / "out"
    handle = ray_backend.start(
        ProcessSpec(
            "burn",
            [PY, "-c", burn],
            stdout_path=out,
            stderr_path=out,
            resources=Resources(cpu_limit="200m"),
        )
    )
    assert handle.wait(120) == 0
    assert handle.cpu_enforced == cgroups.available()  # the nodes share this machine
    share = float(out.read_text().split()[-1])
    if handle.cpu_enforced:
        assert share < 0.5, share
    else:
        assert share > 0, share
