"""Katib's metrics collectors for trials that run as local processes.

An Experiment's ``metricsCollectorSpec`` says where a trial's metrics come from;
:func:`make_collector` turns it into a :class:`Collector` that the trial
controller polls while the trial runs and closes once its process ended. Each
poll returns only what is new: files are tailed from the offset already read, and
a last line without its newline waits for the next poll (``close`` reads it).

Kinds (``collector.kind``):

- ``StdOut`` (the default): the primary container's log (stdout and stderr).
  Each line is searched with the ``source.filter.metricsFormat`` regular
  expressions (default :data:`DEFAULT_METRICS_FORMAT`, Katib's); in each match
  the first group is the metric name and the second its value. A line that
  starts with an RFC 3339 time gives its metrics that timestamp.
- ``File``: ``source.fileSystemPath.path`` (default ``/var/log/katib/metrics.log``)
  in ``format`` ``TEXT`` (parsed as StdOut lines) or ``JSON`` (one object per
  line, metric names as keys with numbers or numeric strings as values, and an
  optional ``timestamp``: RFC 3339 text or seconds since the epoch).
- ``TensorFlowEvent``: the event files under the directory
  ``source.fileSystemPath.path`` (default ``/var/log/katib/tfevent/``), read with
  tensorboard's event reader (see :mod:`ketch.tuning.tfevents`).
- ``Push``: what the trial sent with :func:`ketch.tuning.metrics.report_metrics`
  or to the push endpoint (:mod:`ketch.tuning.api`), both of which append to
  the trial's push file (:func:`ketch.tuning.trialfiles.push_file`).
- ``None``: collects nothing (a Ketch addition, for trials whose metrics are not
  wanted).

``PrometheusMetric`` and ``Custom`` (sidecar containers) are not supported.

Paths in ``fileSystemPath`` are absolute paths inside Katib's container; a local
trial writes them under its own directory instead
(:func:`ketch.tuning.trialfiles.local_path`), and the controller rewrites them in the trial's command, arguments and environment.

Only the metric names asked for are kept. The step of an observation is the
``step`` (else ``epoch``) the report carries — a ``step=3``/``epoch=3`` match on
the same text line, a ``step``/``epoch`` key of a JSON line, the ``step`` given
to ``report_metrics``, the step of a TensorFlow event — when that is an integer;
otherwise it is the index of the report among this collector's reports of that
metric (0, 1, 2, ...), which is the order Katib's median stopping rule uses.
What the observations add up to is :mod:`ketch.tuning.observations`'.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ketch.core.errors import InvalidSpec
from ketch.core.timestamps import parse_time
from ketch.tuning.collector_spec import (
    DEFAULT_FILE_PATH,
    DEFAULT_TFEVENT_DIR,
    FORMAT_FIELD,
    KIND_FIELD,
    PATH_FIELD,
    SOURCE_FIELD,
    SPEC_FIELD,
)
from ketch.tuning.observations import Observation, metric_number
from ketch.tuning.trialfiles import local_path, push_file

log = logging.getLogger(__name__)

#: Katib's default ``metricsFormat``: ``name=value``, value possibly in scientific notation.
DEFAULT_METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
TEXT, JSON = "TEXT", "JSON"
STEP_KEYS = ("step", "epoch")
SUPPORTED_KINDS = ("StdOut", "File", "TensorFlowEvent", "Push", "None")
_MAX_READ = 16 * 1024 * 1024  # bytes a poll reads at most; the rest waits for the next
_MAX_LINE = 1024 * 1024  # a longer line without its end is parsed as it is


class Collector(Protocol):
    def poll(self) -> list[Observation]:
        """The observations reported since the last poll."""
        ...

    def close(self) -> list[Observation]:
        """The last observations, read once the trial's process ended."""
        ...


# -- building a collector ------------------------------------------------------------


def make_collector(
    spec: Mapping[str, Any] | None,
    metric_names: list[str],
    *,
    log_path: Path | None,
    trial_dir: Path,
) -> Collector:
    """The collector ``spec`` (an Experiment's ``metricsCollectorSpec``; None: StdOut) asks for.

    Creates ``trial_dir`` and the folder a File or TensorFlowEvent trial writes to.
    ``log_path`` is the primary container's log, which a StdOut collector tails.
    """
    spec = _mapping(spec, SPEC_FIELD)
    collector = _mapping(spec.get("collector"), f"{SPEC_FIELD}.collector")
    source = _mapping(spec.get("source"), SOURCE_FIELD)
    kind = collector.get("kind") or "StdOut"
    names = list(dict.fromkeys(name for name in metric_names if name))
    if kind in ("PrometheusMetric", "Custom"):
        raise InvalidSpec(
            f"the {kind} metrics collector is not supported on Ketch",
            field=KIND_FIELD,
            hint="use StdOut, File, TensorFlowEvent or Push",
        )
    if kind not in SUPPORTED_KINDS:
        raise InvalidSpec(
            f"unknown metrics collector kind {kind!r}",
            field=KIND_FIELD,
            hint=f"one of {', '.join(SUPPORTED_KINDS)}",
        )
    filters = _filters(source)
    trial_dir.mkdir(parents=True, exist_ok=True)
    if kind == "StdOut":
        if log_path is None:
            raise ValueError("a StdOut metrics collector needs the trial's log file")
        return TextCollector(log_path, names, filters)
    if kind == "File":
        path, file_format = _file_source(source, trial_dir)
        if file_format == JSON and _has_filter(source):
            raise InvalidSpec(
                "a filter cannot be used with the JSON format", field=f"{SOURCE_FIELD}.filter"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if file_format == JSON:
            return JsonLinesCollector(path, names)
        return TextCollector(path, names, filters)
    if kind == "TensorFlowEvent":
        return _tfevent_collector(source, names, trial_dir)
    if kind == "Push":
        return PushCollector(push_file(trial_dir), names)
    return NoCollector()


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"must be an object, not {type(value).__name__}", field=field)
    return value


def _has_filter(source: Mapping[str, Any]) -> bool:
    return bool(_mapping(source.get("filter"), f"{SOURCE_FIELD}.filter").get("metricsFormat"))


def _filters(source: Mapping[str, Any]) -> list[re.Pattern[str]]:
    formats = _mapping(source.get("filter"), f"{SOURCE_FIELD}.filter").get("metricsFormat")
    if not formats:
        formats = [DEFAULT_METRICS_FORMAT]
    if not isinstance(formats, list):
        raise InvalidSpec("must be a list of regular expressions", field=FORMAT_FIELD)
    patterns = []
    for index, text in enumerate(formats):
        field = f"{FORMAT_FIELD}[{index}]"
        if not isinstance(text, str):
            raise InvalidSpec("must be a regular expression (a string)", field=field)
        try:
            pattern = re.compile(text, re.ASCII)
        except re.error as exc:
            raise InvalidSpec(
                f"{text!r} is not a valid regular expression: {exc}", field=field
            ) from None
        if pattern.groups < 2:
            raise InvalidSpec(
                f"{text!r} needs two groups: the metric name, then its value",
                field=field,
                hint=f"for example {DEFAULT_METRICS_FORMAT!r}",
            )
        patterns.append(pattern)
    return patterns


def _file_system_path(
    source: Mapping[str, Any], default_path: str, want_kind: str
) -> Mapping[str, Any]:
    fs = _mapping(source.get("fileSystemPath"), PATH_FIELD)
    kind = fs.get("kind") or want_kind
    if kind != want_kind:
        raise InvalidSpec(
            f"must be {want_kind!r} for this collector, not {kind!r}", field=f"{PATH_FIELD}.kind"
        )
    path = fs.get("path") or default_path
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidSpec(
            f"{path!r} is not an absolute path",
            field=f"{PATH_FIELD}.path",
            hint=f"for example {default_path!r}",
        )
    return {**fs, "path": path}


def _file_source(source: Mapping[str, Any], trial_dir: Path) -> tuple[Path, str]:
    fs = _file_system_path(source, DEFAULT_FILE_PATH, "File")
    file_format = fs.get("format") or TEXT
    if file_format not in (TEXT, JSON):
        raise InvalidSpec(
            f"unknown format {file_format!r}", field=f"{PATH_FIELD}.format", hint="TEXT or JSON"
        )
    return local_path(fs["path"], trial_dir), file_format


def _tfevent_collector(source: Mapping[str, Any], names: list[str], trial_dir: Path) -> Collector:
    from ketch.tuning.tfevents import tensorboard_available

    fs = _file_system_path(source, DEFAULT_TFEVENT_DIR, "Directory")
    if fs.get("format"):
        raise InvalidSpec("must be empty for TensorFlowEvent", field=f"{PATH_FIELD}.format")
    if not tensorboard_available():
        raise InvalidSpec(
            "the TensorFlowEvent metrics collector needs the tensorboard package, "
            "which is not installed on the server",
            field=KIND_FIELD,
            hint="pip install tensorboard",
        )
    directory = local_path(fs["path"], trial_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return TensorFlowEventCollector(directory, names)


# -- reading ---------------------------------------------------------------------------


class _Steps:
    """Gives observations their step: the one the report carried, else its index."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def observe(
        self, name: str, value: float, timestamp: float | None, step: int | None
    ) -> Observation:
        index = self._counts.get(name, 0)
        self._counts[name] = index + 1
        return Observation(name, value, timestamp, index if step is None else step)


class Tail:
    """The lines appended to a file since the last read (``\\n`` or ``\\r`` ends a line).

    A last line without its end is kept for the next read, or returned by
    ``lines(final=True)``. A file that shrank or was replaced by another (a new
    inode) is read again from its start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None

    def lines(self, *, final: bool = False) -> list[str]:
        try:
            handle = self.path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            return self._flush() if final else []
        with handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size < self._offset or self._inode not in (None, stat.st_ino):
                log.warning("%s was replaced; reading it again from its start", self.path)
                self._offset, self._partial = 0, b""
            self._inode = stat.st_ino
            handle.seek(self._offset)
            data = handle.read() if final else handle.read(_MAX_READ)
        self._offset += len(data)
        buffer = self._partial + data
        end = max(buffer.rfind(b"\n"), buffer.rfind(b"\r")) + 1
        complete, self._partial = buffer[:end], buffer[end:]
        if len(self._partial) > _MAX_LINE:
            complete, self._partial = buffer, b""
        lines = _split(complete)
        return lines + self._flush() if final else lines

    def _flush(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return _split(rest)


def _split(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()]


class _TailingCollector:
    """A collector that parses the lines appended to one file."""

    def __init__(self, path: Path, metric_names: list[str]) -> None:
        self.path = path
        self.metric_names = list(metric_names)
        self._tail = Tail(path)
        self._steps = _Steps()

    def poll(self) -> list[Observation]:
        return self._parse(self._tail.lines())

    def close(self) -> list[Observation]:
        return self._parse(self._tail.lines(final=True))

    def _parse(self, lines: Iterable[str]) -> list[Observation]:
        found: list[Observation] = []
        for line in lines:
            found.extend(self._parse_line(line))
        return found

    def _parse_line(self, line: str) -> list[Observation]:
        raise NotImplementedError


class TextCollector(_TailingCollector):
    """StdOut and File/TEXT: ``name=value`` pairs found by the filter expressions."""

    def __init__(self, path: Path, metric_names: list[str], filters: list[re.Pattern[str]]) -> None:
        super().__init__(path, metric_names)
        self.filters = filters
        self._wanted = set(self.metric_names)

    def _parse_line(self, line: str) -> list[Observation]:
        if not any(name in line for name in self.metric_names):
            return []
        pairs: list[tuple[str, float]] = []
        steps: dict[str, int] = {}
        for pattern in self.filters:
            for match in pattern.finditer(line):
                name, raw = (match.group(1) or "").strip(), (match.group(2) or "").strip()
                value = metric_number(raw)
                if value is None:
                    continue
                if name in STEP_KEYS and value.is_integer():
                    steps.setdefault(name, int(value))
                if name in self._wanted:
                    pairs.append((name, value))
        if not pairs:
            return []
        timestamp = _line_timestamp(line)
        step = steps.get("step", steps.get("epoch"))
        return [self._steps.observe(name, value, timestamp, step) for name, value in pairs]


class JsonLinesCollector(_TailingCollector):
    """File/JSON: one object per line, metric names as keys, an optional ``timestamp``."""

    def _parse_line(self, line: str) -> list[Observation]:
        record = _json_object(line, self.path)
        if record is None:
            return []
        timestamp = _timestamp(record.get("timestamp"))
        step = _step_of(record)
        found = []
        for name in self.metric_names:
            if name not in record:
                continue
            value = metric_number(record[name])
            if value is None:
                log.warning("%s: %s=%r is not a number; skipped", self.path, name, record[name])
                continue
            found.append(self._steps.observe(name, value, timestamp, step))
        return found


class PushCollector(_TailingCollector):
    """Push: the records ``report_metrics`` and the push endpoint appended."""

    def _parse_line(self, line: str) -> list[Observation]:
        record = _json_object(line, self.path)
        if record is None:
            return []
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            return []
        timestamp = _timestamp(record.get("timestamp"))
        step = _integer(record.get("step"))
        found = []
        for name in self.metric_names:
            value = metric_number(metrics.get(name))
            if value is not None:
                found.append(self._steps.observe(name, value, timestamp, step))
        return found


class TensorFlowEventCollector:
    """TensorFlowEvent: scalars from the event files under a directory."""

    def __init__(self, directory: Path, metric_names: list[str]) -> None:
        from ketch.tuning.tfevents import EventDirectory

        self.directory = directory
        self._events = EventDirectory(directory, metric_names)
        self._steps = _Steps()

    def poll(self) -> list[Observation]:
        return [
            self._steps.observe(scalar.metric, scalar.value, scalar.wall_time, scalar.step)
            for scalar in self._events.read()
        ]

    def close(self) -> list[Observation]:
        return self.poll()


class NoCollector:
    """None: collects nothing."""

    def poll(self) -> list[Observation]:
        return []

    def close(self) -> list[Observation]:
        return []


# -- values ----------------------------------------------------------------------------


def _integer(value: Any) -> int | None:
    number = metric_number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _step_of(record: Mapping[str, Any]) -> int | None:
    for key in STEP_KEYS:
        step = _integer(record.get(key))
        if step is not None:
            return step
    return None


def _json_object(line: str, path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        log.warning("%s: a line is not JSON; skipped: %.200s", path, line)
        return None
    if not isinstance(record, dict):
        log.warning("%s: a line is not a JSON object; skipped: %.200s", path, line)
        return None
    return record


def _timestamp(value: Any) -> float | None:
    """RFC 3339 text (no offset: UTC) or seconds since the epoch, as epoch seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return _epoch(value.strip())
    return None


def _epoch(text: str) -> float | None:
    """RFC 3339 text with a date and a time as seconds since the epoch, else None."""
    if len(text) < 19 or text[10] not in "Tt ":
        return None
    try:
        return parse_time(text).timestamp()
    except ValueError:
        return None


def _line_timestamp(line: str) -> float | None:
    """The time a text line starts with (``2024-05-01T10:00:00Z loss=0.3``), if any."""
    first = line.lstrip().split(" ", 1)[0]
    if "T" not in first and "t" not in first:
        return None
    return _epoch(first)
