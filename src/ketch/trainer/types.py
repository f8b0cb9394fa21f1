"""The objects :class:`~ketch.trainer.client.TrainerClient` takes and returns.

They have the shape of the Kubeflow SDK's ``kubeflow.trainer`` types (same names,
fields and defaults), so code written for that SDK reads the same here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNKNOWN = "Unknown"

# TrainJob statuses
CREATED, RUNNING, COMPLETE, FAILED = "Created", "Running", "Complete", "Failed"
JOB_STATUSES = frozenset({CREATED, RUNNING, COMPLETE, FAILED})


@dataclass
class CustomTrainer:
    """Train with a self-contained function, run on every node.

    ``func`` must import what it uses inside its body (only its source is sent);
    it is called with ``func_args`` as keyword arguments, which must be Python
    literals. ``packages_to_install`` are installed into a cached environment on
    the machine running the job (``pip_index_urls``: the first is the index URL,
    the others extra index URLs; ``None``: pip's defaults). ``num_nodes``,
    ``resources_per_node`` (``{"cpu": 2, "memory": "4Gi", "gpu": 1}``) and
    ``env`` override the runtime's.
    """

    func: Callable[..., Any]
    func_args: dict[str, Any] | None = None
    packages_to_install: list[str] | None = None
    pip_index_urls: list[str] | None = None
    num_nodes: int | None = None
    resources_per_node: dict[str, Any] | None = None
    env: dict[str, str] | None = None


@dataclass
class DatasetInitializer:
    """Where the dataset comes from (``file://``, a path, ``http(s)://``, or any
    URI fsspec reads); it lands in the job's ``/workspace/dataset``."""

    storage_uri: str


@dataclass
class ModelInitializer:
    """Where the model comes from; it lands in the job's ``/workspace/model``."""

    storage_uri: str


@dataclass
class Initializer:
    """What a TrainJob fetches before its nodes start (Trainer's initializers)."""

    dataset: DatasetInitializer | None = None
    model: ModelInitializer | None = None

    def spec(self) -> dict[str, Any]:
        """The TrainJob's ``spec.initializer``."""
        out: dict[str, Any] = {}
        for key, part in (("dataset", self.dataset), ("model", self.model)):
            if part is not None:
                out[key] = {"storageUri": str(part.storage_uri)}
        return out


class TrainerType(enum.Enum):
    CUSTOM_TRAINER = "CustomTrainer"
    BUILTIN_TRAINER = "BuiltinTrainer"


@dataclass
class RuntimeTrainer:
    """What a runtime's trainer nodes run by default."""

    trainer_type: TrainerType
    framework: str
    image: str = UNKNOWN
    num_nodes: int = 1
    device: str = UNKNOWN
    device_count: str = UNKNOWN
    command: tuple[str, ...] = ()

    def set_command(self, command: tuple[str, ...]) -> None:
        self.command = tuple(command)


@dataclass
class Runtime:
    """A ClusterTrainingRuntime (or namespaced TrainingRuntime) a TrainJob can use."""

    name: str
    trainer: RuntimeTrainer
    pretrained_model: str | None = None


@dataclass
class Step:
    """One part of a TrainJob: a node (``node-0``, ``node-1``, ...) or an initializer."""

    name: str
    status: str | None
    pod_name: str
    device: str = UNKNOWN
    device_count: str = UNKNOWN


@dataclass
class TrainJob:
    name: str
    runtime: Runtime
    steps: list[Step]
    num_nodes: int
    creation_timestamp: datetime
    status: str = UNKNOWN


@dataclass
class Event:
    involved_object_kind: str
    involved_object_name: str
    message: str
    reason: str
    event_time: datetime
