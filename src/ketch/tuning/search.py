"""Search-space helpers for :func:`ketch.tune`, in the shape of ``katib.search``.

Each returns a Katib ``parameters`` entry without its name (``tune`` adds it)::

    ketch.search.double(min=0.01, max=0.1)              # parameterType double
    ketch.search.double(min=1e-4, max=1e-1, distribution="logUniform")
    ketch.search.int(min=1, max=8, step=1)              # parameterType int
    ketch.search.categorical(["sgd", "adam"])           # parameterType categorical
    ketch.search.discrete([16, 32, 64])                 # parameterType discrete
"""

from __future__ import annotations

import builtins
from typing import Any

Distribution = str  # uniform | logUniform | normal | logNormal


def _space(**values: Any) -> dict[str, Any]:
    return {k: str(v) for k, v in values.items() if v is not None}


def double(
    min: float, max: float, step: float | None = None, distribution: Distribution | None = None
) -> dict[str, Any]:
    space = _space(min=float(min), max=float(max), step=step, distribution=distribution)
    return {"parameterType": "double", "feasibleSpace": space}


def int(  # noqa: A001 - the name users know from katib.search
    min: builtins.int,
    max: builtins.int,
    step: builtins.int | None = None,
    distribution: Distribution | None = None,
) -> dict[str, Any]:
    space = _space(
        min=builtins.int(min), max=builtins.int(max), step=step, distribution=distribution
    )
    return {"parameterType": "int", "feasibleSpace": space}


def categorical(values: list[Any]) -> dict[str, Any]:
    return {"parameterType": "categorical", "feasibleSpace": {"list": [str(v) for v in values]}}


def discrete(values: list[Any]) -> dict[str, Any]:
    return {"parameterType": "discrete", "feasibleSpace": {"list": [str(v) for v in values]}}


__all__ = ["categorical", "discrete", "double", "int"]
