"""Katib: Experiments, Trials, search algorithms (through Optuna) and early stopping.

``ketch.tuning.report_metrics({...})`` is what a trial calls to push its metrics
(Ketch's ``kubeflow.katib.report_metrics``).
"""

from ketch.tuning.metrics import report_metrics

__all__ = ["report_metrics"]
