"""Deprecated: ``ketch.training`` was split into :mod:`ketch.jobs` (kubeflow.org/v1
training jobs and batch/v1 Job) and :mod:`ketch.trainer` (Kubeflow Trainer's
TrainJob, runtimes and ``TrainerClient``).

Only :mod:`ketch.training.client` is kept, for one release, as an alias of
:mod:`ketch.trainer.client`: import from ``ketch.trainer.client`` instead.
"""
