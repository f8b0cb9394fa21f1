"""Running the real ``kubectl`` against a test server.

``kubectl_for(url, tmp_path)`` writes a kubeconfig whose one context (``ketch``)
points at ``url`` with no credentials, and gives a :class:`Kubectl` that runs a
kubectl binary with it (``--kubeconfig``), its own discovery/HTTP cache and its own
``HOME``, so nothing of the user's ``~/.kube`` is read or written. :class:`Background`
runs one in the background (``kubectl get -w``) and reads its output as it comes.

The binaries: the machine image's versioned ones
(``/usr/lib/google-cloud-sdk/bin/kubectl.1.NN``, :func:`versioned`), its dispatcher
(``/usr/bin/kubectl``, which picks one of those by the server's ``/version``,
:func:`dispatcher`), or whatever ``kubectl`` is on ``PATH`` (Debian's
``kubernetes-client``). Each finder calls ``pytest.skip`` with the reason when the
binary is missing.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")
DISPATCHER = Path("/usr/bin/kubectl")
#: the versioned kubectls Ketch is tested with
VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")


def versioned(version: str) -> Path:
    """``kubectl.{version}`` of the machine image (skips the test when it is missing)."""
    binary = SDK_BIN / f"kubectl.{version}"
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {version} is not installed ({binary} is missing)")
    return binary


def dispatcher() -> Path:
    """The machine image's kubectl dispatcher (skips the test when it is missing)."""
    resolved = DISPATCHER.resolve() if DISPATCHER.exists() else None
    if resolved is None or not os.access(resolved, os.X_OK):
        pytest.skip(f"no kubectl dispatcher at {DISPATCHER}")
    if not any(SDK_BIN.glob("kubectl.1.*")):
        pytest.skip(f"{DISPATCHER} has no versioned kubectl to dispatch to in {SDK_BIN}")
    return DISPATCHER


def any_kubectl() -> Path:
    """A kubectl: 1.33 or 1.32 of the machine image, else the one on ``PATH`` (skips
    the test when there is none)."""
    for version in ("1.33", "1.32"):
        binary = SDK_BIN / f"kubectl.{version}"
        if os.access(binary, os.X_OK):
            return binary
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl: neither the machine image's nor one on PATH")
    return Path(found)


def write_kubeconfig(
    directory: Path, server: str, *, namespace: str = "default", context: str = "ketch"
) -> Path:
    """A kubeconfig in ``directory`` whose context ``context`` (the current one) points
    at ``server`` (``http://127.0.0.1:PORT``), without credentials, in ``namespace``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Kubectl:
    """One kubectl binary with one kubeconfig."""

    binary: Path
    kubeconfig: Path
    home: Path

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBECONFIG": str(self.kubeconfig),
            "NO_COLOR": "1",
        }

    def command(self, *args: str) -> list[str]:
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.home / 'cache'}",
            *args,
        ]

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl --kubeconfig ... ARGS``; with ``check`` a failure fails the test
        with kubectl's output."""
        command = self.command(*args)
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited with {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


class Background:
    """A kubectl command running in the background (``kubectl get -w``): its output
    lines as they come, read by a thread; :meth:`stop` ends it."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.process = subprocess.Popen(
            kubectl.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=kubectl.env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.error = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(
        self, found: Callable[[list[str]], bool], timeout: float = 30, *, fail: bool = True
    ) -> list[str] | None:
        """The output lines so far, once ``found(lines)`` holds; when it does not
        within ``timeout`` seconds, ``None``, or with ``fail`` a test failure showing
        kubectl's output."""
        deadline = time.monotonic() + timeout
        while not found(self.seen):
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self.lines.empty()):
                if not fail:
                    return None
                pytest.fail(f"kubectl printed {self.seen!r}; stderr: {self.stop()}")
            try:
                self.seen.append(self.lines.get(timeout=min(left, 0.5)))
            except queue.Empty:
                continue
        return list(self.seen)

    def stop(self) -> str:
        """End kubectl (if it still runs); what it wrote to stderr."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        if self.process.stderr is not None and not self.process.stderr.closed:
            self.error = self.process.stderr.read()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.error


def kubectl_for(
    server: str, directory: Path, binary: Path | None = None, *, namespace: str = "default"
) -> Kubectl:
    """A :class:`Kubectl` for the server at ``server``, its files under ``directory``."""
    home = directory / "kubectl-home"
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(
        binary or any_kubectl(),
        write_kubeconfig(directory, server, namespace=namespace),
        home,
    )
