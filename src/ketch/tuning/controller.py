"""The Katib controllers, made together: Experiment -> Trials -> jobs.

An Experiment's controller (:mod:`ketch.tuning.experiment_controller`) keeps its
trials running and asks the experiment's study for their parameters; a Trial's
controller (:mod:`ketch.tuning.trial_controller`) runs the trial as a job, reads
its metrics and reports them to the same study, whose early-stopping rule may end
the trial. :func:`controllers` makes the two with one :class:`~ketch.tuning.studies.Studies`
between them: the studies of one control plane belong to its controllers, not to
the process.
"""

from __future__ import annotations

from ketch.core.backend import Backend
from ketch.core.controller import Controller
from ketch.core.store.resources import ResourceStore
from ketch.tuning.experiment_controller import ExperimentController
from ketch.tuning.studies import Studies
from ketch.tuning.trial_controller import TrialController


def controllers(store: ResourceStore, _backend: Backend) -> tuple[Controller, ...]:
    """The Experiment and Trial controllers over ``store``, sharing their studies.

    Trials run as jobs that other capabilities' controllers start, so tuning's own
    controllers never use the compute backend."""
    studies = Studies()
    return (ExperimentController(store, studies), TrialController(store, studies))
