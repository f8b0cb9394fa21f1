"""Ketch: Kubeflow's pipelines, training jobs, Trainer, Katib tuning and KServe serving
from one command on one machine, from the same specs and wire APIs.

``ketch.run`` runs a KFP pipeline and ``ketch.tune`` a Katib experiment in this
process (no server needed); ``ketch up`` serves the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from ketch.pipelines.client import Run
    from ketch.tuning.client import Experiment


def run(pipeline: Any, arguments: dict[str, Any] | None = None, **options: Any) -> Run:
    """Run a KFP pipeline locally and wait for it; see :func:`ketch.pipelines.client.run`
    (its tasks start through the composition root's backend, and it is recorded in the
    process's store, unless ``backend`` or ``database`` is given)."""
    from ketch.capabilities import backend, database, packages
    from ketch.core import config
    from ketch.pipelines.client import run as _run

    # made only when not given: a caller's own backend or store leaves the process's
    # alone (setdefault would make them first)
    if options.get("backend") is None:
        options["backend"] = backend()
    if options.get("packages") is None:
        options["packages"] = packages()
    if options.get("database") is None:
        options["database"] = database(config.database_url())
    return _run(pipeline, arguments=arguments, **options)


def tune(name: str, objective: Any, parameters: dict[str, Any], **options: Any) -> Experiment:
    """Tune ``objective`` over ``parameters`` (a Katib Experiment); see
    :meth:`ketch.tuning.client.TuningClient.tune`."""
    from ketch.capabilities import ASSEMBLY
    from ketch.tuning.client import tune as _tune

    options.setdefault("assembly", ASSEMBLY)
    return _tune(name, objective, parameters, **options)


def __getattr__(name: str) -> Any:
    if name == "search":  # ketch.search.double(...), like katib.search
        from ketch.tuning import search

        return search
    raise AttributeError(f"module 'ketch' has no attribute {name!r}")


__all__ = ["__version__", "run", "search", "tune"]
