"""Where a backend writes the logs of a process whose spec names no log files: a
temporary folder of the backend's own, made on first use and removed at shutdown, with
numbered file names that say which process wrote them."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from ketch.core.backend.spec import ProcessSpec
from ketch.core.errors import BackendError


class LogFiles:
    """The log files of one backend's processes (thread-safe)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._tmp: Path | None = None

    def folder(self) -> Path:
        """The backend's temporary folder, made on first use."""
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix=self._prefix))
            return self._tmp

    def numbered(self, name: str) -> str:
        """A file name stem unique in the folder: a number, then ``name`` made safe."""
        return f"{next(self._seq):05d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)[:60]}"

    def paths(self, spec: ProcessSpec) -> tuple[Path, Path]:
        """``spec``'s stdout and stderr files (absolute; the folder's where it names
        none), their folders made."""
        stdout, stderr = spec.stdout_path, spec.stderr_path
        if stdout is None or stderr is None:
            tmp, stem = self.folder(), self.numbered(spec.name)
            stdout = stdout if stdout is not None else tmp / f"{stem}.stdout.log"
            stderr = stderr if stderr is not None else tmp / f"{stem}.stderr.log"
        stdout, stderr = Path(os.path.abspath(stdout)), Path(os.path.abspath(stderr))
        for path in {stdout, stderr}:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(
                    f"cannot start {spec.name!r}: cannot create the log folder "
                    f"{path.parent}: {exc.strerror or exc}"
                ) from exc
        return stdout, stderr

    def remove(self) -> None:
        """Remove the folder, if it was made."""
        with self._lock:
            tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
