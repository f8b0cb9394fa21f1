"""The model repository: what is served, in what state, loaded from where.

The source is a model (a file, or a folder of model files, optionally with
numbered version folders as Triton lays them out) or a folder of model folders
(a multi-model repository: each sub-folder is a model named after it). Models
can also be added as Python objects. Every model is READY, LOADING,
UNAVAILABLE (its load failed: ``reason`` says why) or UNLOADED.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.serving.errors import InvalidSpec, ModelNotFound, ModelNotReady
from ketch.serving.formats import infer_format, read_settings, version_folders
from ketch.serving.metrics import Metrics
from ketch.serving.model import ArrayModel, Model
from ketch.serving.runner import ModelRunner
from ketch.serving.runtimes import create_model
from ketch.serving.sources import fetch

# A model without numbered version folders has this one version.
DEFAULT_VERSION = "1"


class ModelState(enum.StrEnum):
    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADED = "UNLOADED"


@dataclass
class ServeOptions:
    """How models are served; per-model ``model-settings.json`` values win."""

    name: str | None = None
    format: str | None = None
    predictor_url: str | None = None
    method: str | None = None
    model_class: str | None = None
    max_batch_size: int = 0
    max_latency_ms: float = 5.0
    max_queue_size: int = 1024


@dataclass
class ModelEntry:
    name: str
    path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    state: ModelState = ModelState.UNLOADED
    reason: str = ""
    version: str | None = None
    model: Model | None = None
    runner: ModelRunner | None = None
    instance: Model | None = None  # a model added as an object

    def index(self) -> dict[str, Any]:
        entry = {"name": self.name, "state": self.state.value, "reason": self.reason}
        if self.version:
            entry["version"] = self.version
        return entry


class ModelRepository:
    def __init__(
        self,
        source: str | None = None,
        options: ServeOptions | None = None,
        *,
        executor: Executor,
        metrics: Metrics,
    ) -> None:
        self.options = options or ServeOptions()
        self.executor = executor
        self.metrics = metrics
        self.entries: dict[str, ModelEntry] = {}
        self.root: Path | None = None
        self.multi = False
        self._lock = threading.Lock()
        self._load_lock: asyncio.Lock | None = None
        metrics.gauge("ketch_serving_queue_depth", self._depths)
        if source is not None:
            self._scan(fetch(source))

    # -- discovery -----------------------------------------------------------------

    def _scan(self, local: Path) -> None:
        self.root = local
        if local.is_file() or self._is_single(local):
            name = self.options.name or self._default_name(local)
            self._add(ModelEntry(name=name, path=local))
            return
        self.multi = True
        for folder in sorted(p for p in local.iterdir() if p.is_dir()):
            if not folder.name.startswith((".", "_")):
                self._add(ModelEntry(name=folder.name, path=folder))

    def _is_single(self, folder: Path) -> bool:
        if self.options.format and not any(p.is_dir() for p in folder.iterdir()):
            return True
        if read_settings(folder).get("format") or infer_format(folder):
            return True
        subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return bool(subfolders) and all(p.name.isdigit() for p in subfolders)

    def _default_name(self, path: Path) -> str:
        settings = read_settings(path) if path.is_dir() else {}
        if settings.get("name"):
            return str(settings["name"])
        return path.stem if path.is_file() else path.name

    def _add(self, entry: ModelEntry) -> None:
        with self._lock:
            self.entries[entry.name] = entry

    def add_model(self, model: Model) -> ModelEntry:
        """Serve a model object (loaded by :meth:`load` like any other)."""
        entry = ModelEntry(name=model.name, instance=model)
        self._add(entry)
        return entry

    # -- lookups ---------------------------------------------------------------------

    def get(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        return entry

    def ready_runner(self, name: str, version: str | None = None) -> tuple[ModelEntry, ModelRunner]:
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        if version and version != (entry.version or DEFAULT_VERSION):
            raise ModelNotFound(name, version)
        runner = entry.runner
        if entry.state is not ModelState.READY or runner is None:
            raise ModelNotReady(self.not_ready_message(entry))
        return entry, runner

    @staticmethod
    def not_ready_message(entry: ModelEntry) -> str:
        if entry.state is ModelState.UNAVAILABLE:
            return f"model {entry.name!r} is not ready: it failed to load: {entry.reason}"
        if entry.state is ModelState.LOADING:
            return f"model {entry.name!r} is not ready: it is loading"
        return f"model {entry.name!r} is not ready: it is unloaded"

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        if self.multi and self.root is not None and self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                if not folder.name.startswith((".", "_")) and folder.name not in self.entries:
                    self._add(ModelEntry(name=folder.name, path=folder))
        entries = list(self.entries.values())
        if ready_only:
            entries = [e for e in entries if e.state is ModelState.READY]
        return [e.index() for e in entries]

    def ready(self) -> bool:
        return all(
            e.state in (ModelState.READY, ModelState.UNLOADED) for e in self.entries.values()
        ) and any(e.state is ModelState.READY for e in self.entries.values())

    def _depths(self) -> dict[str, int]:
        return {n: e.runner.inflight for n, e in list(self.entries.items()) if e.runner}

    # -- load / unload -----------------------------------------------------------------

    async def load_all(self) -> None:
        for name in list(self.entries):
            await self.load(name)

    async def load(self, name: str) -> ModelEntry:
        """(Re)load ``name``; a failure leaves it UNAVAILABLE with the error as reason."""
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            entry = self.entries.get(name)
            if entry is None and self.multi and self.root is not None:
                folder = self.root / name
                if folder.is_dir() and "/" not in name and not name.startswith("."):
                    entry = ModelEntry(name=name, path=folder)
                    self._add(entry)
            if entry is None:
                raise ModelNotFound(name)
            await self._retire(entry)
            entry.state = ModelState.LOADING
            entry.reason = ""
            try:
                model = await self._load_model(entry)
            except Exception as exc:  # noqa: BLE001 - the model's loader is user code: its error (type and message) becomes the model's reason
                entry.state = ModelState.UNAVAILABLE
                entry.reason = _describe(exc)
                return entry
            settings = entry.settings
            entry.model = model
            entry.runner = ModelRunner(
                model,
                executor=self.executor,
                metrics=self.metrics,
                max_queue_size=int(settings.get("max_queue_size", self.options.max_queue_size)),
                max_batch_size=int(settings.get("max_batch_size", self.options.max_batch_size)),
                max_latency=float(settings.get("max_latency_ms", self.options.max_latency_ms))
                / 1000.0,
            )
            entry.state = ModelState.READY
            return entry

    async def unload(self, name: str) -> ModelEntry:
        entry = self.get(name)
        await self._retire(entry)
        entry.state = ModelState.UNLOADED
        entry.reason = ""
        return entry

    async def close(self) -> None:
        for entry in list(self.entries.values()):
            await self._retire(entry)

    async def _retire(self, entry: ModelEntry) -> None:
        runner, model = entry.runner, entry.model
        entry.runner = None
        entry.model = None
        if runner is not None:
            await runner.close()
        if model is not None:
            unload = model.unload
            if inspect.iscoroutinefunction(unload):
                await unload()
            else:
                unload()

    async def _load_model(self, entry: ModelEntry) -> Model:
        loop = asyncio.get_running_loop()
        if entry.instance is not None:
            model = entry.instance
            entry.version = model.version or DEFAULT_VERSION
        else:
            model = await loop.run_in_executor(None, self._create, entry)
        result: bool | None = True
        if not model.ready:  # a KServe-style model may load itself in __init__
            if inspect.iscoroutinefunction(model.load):
                result = await model.load()
            else:
                result = await loop.run_in_executor(None, model.load)
        if result is False or not model.ready:
            raise InvalidSpec(f"{type(model).__name__}.load() did not make the model ready")
        if entry.version and model.version is None:
            model.version = entry.version
        if isinstance(model, ArrayModel) and self.options.method and "method" not in model.settings:
            model.settings["method"] = self.options.method
        return model

    def _create(self, entry: ModelEntry) -> Model:
        path = entry.path
        assert path is not None
        versions = version_folders(path)
        entry.version = DEFAULT_VERSION
        if versions:
            path = versions[-1]
            entry.version = path.name
        settings = read_settings(path) if path.is_dir() else {}
        if path.is_dir() and path != entry.path and entry.path is not None:
            settings = {**read_settings(entry.path), **settings}
        if self.options.model_class and "model_class" not in settings:
            settings["model_class"] = self.options.model_class
        if self.options.method and "method" not in settings:
            settings["method"] = self.options.method
        entry.settings = settings
        format = settings.get("format") or self.options.format or infer_format(path)
        if not format:
            raise InvalidSpec(
                f"cannot tell the format of the model at {path}",
                hint="pass --format sklearn|xgboost|lightgbm|onnx|pytorch|python",
            )
        model = create_model(
            str(format),
            entry.name,
            path,
            settings,
            settings.get("predictor_url") or self.options.predictor_url,
        )
        return model


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, InvalidSpec | ModelNotFound):
        return text
    return f"{type(exc).__name__}: {text}"
