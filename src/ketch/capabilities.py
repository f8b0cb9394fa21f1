"""The composition root: every capability Ketch assembles, in one explicit tuple,
and the one place that picks the compute backend.

The API server (``ketch up``) and the embedded control plane (``ketch.tune`` with
no server) serve exactly these; nothing registers itself on import.
"""

from __future__ import annotations

from ketch.core.backend import Backend
from ketch.core.capability import Capability
from ketch.serving.capability import CAPABILITY as SERVING
from ketch.training.capability import CAPABILITY as TRAINING
from ketch.tuning.capability import CAPABILITY as TUNING

CAPABILITIES: tuple[Capability, ...] = (TRAINING, TUNING, SERVING)


def backend() -> Backend:
    """The compute backend controllers start processes through: the local one (its
    warm fork server and process groups), shared by everything in this process."""
    from ketch.core.backend import default_backend

    return default_backend()
