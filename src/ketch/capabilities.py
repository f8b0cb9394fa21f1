"""The composition root: every capability Ketch assembles, in one explicit tuple.

The API server (``ketch up``) and the embedded control plane (``ketch.tune`` with
no server) serve exactly these; nothing registers itself on import.
"""

from __future__ import annotations

from ketch.core.capability import Capability
from ketch.serving.capability import CAPABILITY as SERVING
from ketch.training.capability import CAPABILITY as TRAINING
from ketch.tuning.capability import CAPABILITY as TUNING

CAPABILITIES: tuple[Capability, ...] = (TRAINING, TUNING, SERVING)
