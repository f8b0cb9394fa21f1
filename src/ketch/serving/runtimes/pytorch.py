"""PyTorch models saved as TorchScript (``torch.jit.save``), run on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.serving.runtimes.base import FileArrayModel, model_file
from ketch.serving.types import ModelMetadata


class TorchScriptModel(FileArrayModel):
    platform = "pytorch_torchscript"
    suffixes = (".pt", ".pth", ".torchscript", ".ts")

    def load(self) -> bool:
        import torch

        self._torch: Any = torch
        self._module: Any = torch.jit.load(
            str(model_file(self.path, self.suffixes)), map_location="cpu"
        )
        self._module.eval()
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        torch = self._torch
        tensors = [torch.from_numpy(np.array(a, copy=True)) for a in inputs.values()]
        with torch.inference_mode():
            result = self._module(*tensors)
        if isinstance(result, dict):
            return {str(k): v.detach().numpy() for k, v in result.items()}
        if isinstance(result, list | tuple):
            return {f"output-{i}": v.detach().numpy() for i, v in enumerate(result)}
        return {"output-0": result.detach().numpy()}

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)
