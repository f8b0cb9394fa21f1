"""Where a trial's files live on this machine: its metrics folder, its push file,
and the local stand-ins for the container paths its metrics collector reads.

Each trial has a folder of its own, ``<logs>/tuning/<namespace>/<trial>/<uid>``
(:func:`trial_dir`), created by the trial controller before the trial starts. It
holds the push file that :func:`ketch.tuning.report_metrics` and the push endpoint
append to (:func:`push_file`), and, under ``fs/``, the files a ``File`` or
``TensorFlowEvent`` collector reads at the absolute paths the Experiment names
inside Katib's container (:func:`local_path`): the controller rewrites those paths
in the trial's command, arguments and environment.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ketch.core import config
from ketch.core.errors import InvalidSpec
from ketch.tuning.collector_spec import DEFAULT_FILE_PATH, PATH_FIELD

PUSH_FILE = "pushed-metrics.jsonl"
LOCAL_ROOT = "fs"  # under a trial's directory: where its container paths live


def trial_dir(namespace: str, trial: str, uid: str | None) -> Path:
    """The directory of a trial's metrics files: ``<logs>/tuning/<namespace>/<trial>/<uid>``.

    The trial's uid keeps a trial deleted and created again under the same name from
    reading (or appending to) the files of the one before it."""
    folder = config.logs_dir() / "tuning" / namespace / trial
    return folder / uid if uid else folder


def push_file(directory: Path) -> Path:
    """The JSON-lines file that pushed metrics are appended to, in a trial's directory."""
    return directory / PUSH_FILE


def local_path(spec_path: str, trial_dir: Path) -> Path:
    """Where a local trial keeps the container path ``spec_path``: ``<trial_dir>/fs/<path>``.

    ``/var/log/katib/metrics.log`` becomes ``<trial_dir>/fs/var/log/katib/metrics.log``.
    """
    parts = [part for part in PurePosixPath(spec_path).parts if part not in ("/", ".")]
    if not parts or ".." in parts:
        raise InvalidSpec(
            f"{spec_path!r} is not a usable path: give an absolute path without '..'",
            field=f"{PATH_FIELD}.path",
            hint=f"for example {DEFAULT_FILE_PATH!r}",
        )
    return trial_dir.joinpath(LOCAL_ROOT, *parts)
