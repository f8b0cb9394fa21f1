"""A model that takes a while: its calls pile up in the queue."""

from __future__ import annotations

import time
from typing import Any

from ketch.serving import Model


class Slow(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        time.sleep(float(self.settings.get("seconds", 0.5)))
        return {"predictions": [1]}
