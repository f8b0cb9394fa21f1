"""An array model that doubles its input and records the rows of every call."""

from __future__ import annotations

import numpy as np

from ketch.serving import ArrayModel


class Recorder(ArrayModel):
    def load(self) -> bool:
        self.calls: list[int] = []
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        x = next(iter(inputs.values()))
        self.calls.append(int(x.shape[0]))
        return {"doubled": x * 2}
