"""Deprecated: ``ketch.training`` was split into :mod:`ketch.jobs` (kubeflow.org/v1
training jobs and batch/v1 Job) and :mod:`ketch.trainer` (Kubeflow Trainer's
TrainJob, runtimes and ``TrainerClient``).

Kept for one release: :mod:`ketch.training.client`, an alias of
:mod:`ketch.trainer.client` (import from ``ketch.trainer.client`` instead), and
:mod:`ketch.training.function_runner`, which TrainJobs stored before the split run.
"""
