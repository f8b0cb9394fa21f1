"""Deprecated alias of :mod:`ketch.trainer.client`, kept for one release.

Import from the new place instead::

    from ketch.trainer.client import CustomTrainer, TrainerClient
"""

from __future__ import annotations

from ketch.trainer.client import (
    CustomTrainer,
    DatasetInitializer,
    Event,
    Initializer,
    ModelInitializer,
    Runtime,
    RuntimeTrainer,
    Step,
    TrainerClient,
    TrainerError,
    TrainerType,
    TrainJob,
)

__all__ = [
    "CustomTrainer",
    "DatasetInitializer",
    "Event",
    "Initializer",
    "ModelInitializer",
    "Runtime",
    "RuntimeTrainer",
    "Step",
    "TrainJob",
    "TrainerClient",
    "TrainerError",
    "TrainerType",
]
