"""An Experiment's metrics collector (``spec.metricsCollectorSpec``): its typed
model, Katib's checks of it and the defaults its webhook fills in.

The collector's ``kind`` is ``StdOut`` by default; a ``File`` collector reads
:data:`DEFAULT_FILE_PATH` (``TEXT``), a ``TensorFlowEvent`` collector the directory
:data:`DEFAULT_TFEVENT_DIR`, a ``PrometheusMetric`` collector ``/metrics`` on port
8080. ``Custom`` and ``PrometheusMetric`` collectors are sidecar containers, which
Ketch cannot run (:func:`check_runnable`). Reading a running trial's metrics is
:mod:`ketch.tuning.collectors`'.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import Field

from ketch.core.errors import InvalidSpec
from ketch.core.spec import SpecModel

CollectorKind = Literal[
    "StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None", "Push"
]

SPEC_FIELD = "spec.metricsCollectorSpec"
KIND_FIELD = f"{SPEC_FIELD}.collector.kind"
SOURCE_FIELD = f"{SPEC_FIELD}.source"
FORMAT_FIELD = f"{SOURCE_FIELD}.filter.metricsFormat"
PATH_FIELD = f"{SOURCE_FIELD}.fileSystemPath"

DEFAULT_FILE_PATH = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080
#: metrics collectors Katib knows that need a sidecar container Ketch cannot run
UNRUNNABLE_COLLECTORS = ("Custom", "PrometheusMetric")


class FileSystemPath(SpecModel):
    path: str | None = None
    kind: Literal["File", "Directory"] | None = None
    format: Literal["TEXT", "JSON"] | None = None


class FilterSpec(SpecModel):
    metricsFormat: list[str] = Field(default_factory=list)


class HttpGetAction(SpecModel):
    path: str | None = None
    port: int | str | None = None
    host: str | None = None
    scheme: str | None = None


class SourceSpec(SpecModel):
    httpGet: HttpGetAction | None = None
    fileSystemPath: FileSystemPath | None = None
    filter: FilterSpec | None = None


class CollectorSpec(SpecModel):
    kind: CollectorKind = "StdOut"
    customCollector: dict[str, Any] | None = None


class MetricsCollectorSpec(SpecModel):
    source: SourceSpec | None = None
    collector: CollectorSpec = Field(default_factory=CollectorSpec)


def check_runnable(spec: MetricsCollectorSpec) -> None:
    """Refuse what Katib accepts but Ketch cannot run: metrics collectors that are
    sidecar containers (``Custom``, ``PrometheusMetric``)."""
    kind = spec.collector.kind
    if kind in UNRUNNABLE_COLLECTORS:
        runnable = ", ".join(k for k in get_args(CollectorKind) if k not in UNRUNNABLE_COLLECTORS)
        raise InvalidSpec(
            f"the {kind} metrics collector runs a sidecar container, which Ketch cannot run; "
            f"use one of {runnable} (Push: call ketch.tuning.report_metrics in the trial)",
            field=KIND_FIELD,
        )


def check_metrics_collector(spec: MetricsCollectorSpec) -> None:
    """Katib's checks of ``spec.metricsCollectorSpec``, filling in its webhook's
    defaults (the File, TensorFlowEvent and PrometheusMetric sources)."""
    kind = spec.collector.kind
    where = SPEC_FIELD
    if kind == "PrometheusMetric":
        source = spec.source = spec.source or SourceSpec()
        http = source.httpGet = source.httpGet or HttpGetAction()
        http.path = http.path or DEFAULT_PROMETHEUS_PATH
        http.port = http.port or DEFAULT_PROMETHEUS_PORT
        try:
            port = int(http.port)
        except (TypeError, ValueError):
            port = 0
        if port <= 0:
            raise InvalidSpec("must be a positive integer", field=f"{where}.source.httpGet.port")
        if not http.path.startswith("/"):
            raise InvalidSpec("must start with '/'", field=f"{where}.source.httpGet.path")
    elif kind in ("File", "TensorFlowEvent"):
        source = spec.source = spec.source or SourceSpec()
        fs = source.fileSystemPath = source.fileSystemPath or FileSystemPath()
        at = f"{where}.source.fileSystemPath"
        if kind == "File":
            fs.kind = fs.kind or "File"
            fs.path = fs.path or DEFAULT_FILE_PATH
            fs.format = fs.format or "TEXT"
            if fs.kind != "File":
                raise InvalidSpec("must be File for a File collector", field=f"{at}.kind")
            if fs.format == "JSON" and source.filter is not None:
                raise InvalidSpec(
                    "a filter does not apply to JSON metrics files; remove it",
                    field=f"{where}.source.filter",
                )
        else:
            fs.kind = fs.kind or "Directory"
            fs.path = fs.path or DEFAULT_TFEVENT_DIR
            if fs.kind != "Directory":
                raise InvalidSpec(
                    "must be Directory for a TensorFlowEvent collector", field=f"{at}.kind"
                )
            if fs.format is not None:
                raise InvalidSpec(
                    "must be empty for a TensorFlowEvent collector", field=f"{at}.format"
                )
        if not fs.path.startswith("/"):
            raise InvalidSpec(f"{fs.path!r} must be an absolute path", field=f"{at}.path")
    elif kind == "Custom":
        if not spec.collector.customCollector:
            raise InvalidSpec(
                "a Custom collector needs collector.customCollector (a container)",
                field=f"{where}.collector.customCollector",
            )
        custom_fs = spec.source.fileSystemPath if spec.source else None
        if custom_fs is not None and (
            not (custom_fs.path or "").startswith("/") or custom_fs.kind is None
        ):
            raise InvalidSpec(
                "needs an absolute path and kind File or Directory",
                field=f"{where}.source.fileSystemPath",
            )
    filters = spec.source.filter.metricsFormat if spec.source and spec.source.filter else []
    for index, pattern in enumerate(filters):
        at = f"{where}.source.filter.metricsFormat[{index}]"
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise InvalidSpec(f"{pattern!r} is not a regular expression: {exc}", field=at) from None
        if compiled.groups < 2:
            raise InvalidSpec(
                f"{pattern!r} needs two groups: the metric name, then its value", field=at
            )
