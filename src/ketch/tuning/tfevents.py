"""Reading scalars from TensorFlow event files as they grow (Katib's TensorFlowEvent collector).

Uses tensorboard's event file loader, which keeps its offset in each file and
retries a record that was only partly written, so every poll reads only what is
new. Both summary styles are read: ``simple_value`` scalars (what
``torch.utils.tensorboard.SummaryWriter.add_scalar`` and TF 1 write) and
one-element tensors (what ``tf.summary.scalar`` in TF 2 writes).

A metric name matches a value when it equals the value's tag (``loss`` or
``Loss/train``), or, for a name ``dir/tag``, when the tag is ``tag`` and the event
file lies in a folder whose path (relative to the collector's directory) is
``dir`` or ends with ``/dir`` — so ``train/accuracy`` reads tag ``accuracy`` from
the event files under ``train/``, as Katib does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_FILE_MARK = "tfevents"


def tensorboard_available() -> bool:
    """Whether tensorboard's event reader can be imported here."""
    try:
        from tensorboard.backend.event_processing import event_file_loader  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Scalar:
    """One scalar value read from an event file."""

    metric: str
    value: float
    wall_time: float
    step: int


class EventDirectory:
    """The event files under ``directory`` (any depth), read incrementally."""

    def __init__(self, directory: Path, metric_names: list[str]) -> None:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        self._loader_type = EventFileLoader
        self.directory = directory
        self.metric_names = list(metric_names)
        self._loaders: dict[Path, Any] = {}
        self._broken: set[Path] = set()

    def read(self) -> list[Scalar]:
        """Every matching scalar written since the last call, file by file in name order."""
        found: list[Scalar] = []
        for path in self._event_files():
            loader = self._loader(path)
            if loader is None:
                continue
            relative = path.parent.relative_to(self.directory).as_posix()
            try:
                for event in loader.Load():
                    found.extend(self._scalars(event, "" if relative == "." else relative))
            except Exception as exc:  # noqa: BLE001 - tensorboard's reader raises its own errors (tf.errors, protobuf): one bad file must not stop the others
                log.warning("cannot read the event file %s: %s: %s", path, type(exc).__name__, exc)
                self._loaders.pop(path, None)
                self._broken.add(path)
        return found

    def _event_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        files = [
            path
            for path in self.directory.rglob(f"*{EVENT_FILE_MARK}*")
            if path.is_file() and path not in self._broken
        ]
        return sorted(files)

    def _loader(self, path: Path) -> Any:
        loader = self._loaders.get(path)
        if loader is None:
            try:
                loader = self._loader_type(str(path))
            except Exception as exc:  # noqa: BLE001 - tensorboard's reader raises its own errors (tf.errors, protobuf): one bad file must not stop the others
                log.warning("cannot open the event file %s: %s: %s", path, type(exc).__name__, exc)
                self._broken.add(path)
                return None
            self._loaders[path] = loader
        return loader

    def _scalars(self, event: Any, relative_dir: str) -> Iterator[Scalar]:
        if event.WhichOneof("what") != "summary":
            return
        for value in event.summary.value:
            names = self._names_for(value.tag, relative_dir)
            if not names:
                continue
            number = _scalar_of(value)
            if number is None:
                continue
            for name in names:
                yield Scalar(name, number, float(event.wall_time), int(event.step))

    def _names_for(self, tag: str, relative_dir: str) -> list[str]:
        return [name for name in self.metric_names if _matches(name, tag, relative_dir)]


def _matches(name: str, tag: str, relative_dir: str) -> bool:
    if name == tag:
        return True
    if "/" not in name:
        return False
    folder, base = name.rsplit("/", 1)
    if base != tag:
        return False
    return relative_dir == folder or relative_dir.endswith("/" + folder)


def _scalar_of(value: Any) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return _shortest_float32(value.simple_value)
    if kind != "tensor":
        return None
    from tensorboard.util import tensor_util

    try:
        array = tensor_util.make_ndarray(value.tensor)
    except (TypeError, ValueError):  # an unsupported dtype, or content that does not fit the shape
        return None
    if array.size != 1 or array.dtype.kind not in "fiu":
        return None
    item = array.reshape(-1)[0]
    if array.dtype.itemsize == 4 and array.dtype.kind == "f":
        return _shortest_float32(float(item))
    return float(item)


def _shortest_float32(number: float) -> float:
    """A float32 read back as the shortest decimal that names it (0.71, not 0.7099999785)."""
    import numpy as np

    return float(str(np.float32(number)))
