"""ONNX models, run with onnxruntime on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.serving.errors import InvalidInput
from ketch.serving.runtimes.base import FileArrayModel, model_file
from ketch.serving.types import ModelMetadata, TensorSpec

_ONNX_TYPES: dict[str, tuple[str, str]] = {
    "tensor(float)": ("FP32", "<f4"),
    "tensor(double)": ("FP64", "<f8"),
    "tensor(float16)": ("FP16", "<f2"),
    "tensor(int8)": ("INT8", "<i1"),
    "tensor(int16)": ("INT16", "<i2"),
    "tensor(int32)": ("INT32", "<i4"),
    "tensor(int64)": ("INT64", "<i8"),
    "tensor(uint8)": ("UINT8", "<u1"),
    "tensor(uint16)": ("UINT16", "<u2"),
    "tensor(uint32)": ("UINT32", "<u4"),
    "tensor(uint64)": ("UINT64", "<u8"),
    "tensor(bool)": ("BOOL", "?"),
    "tensor(string)": ("BYTES", "O"),
}


def _spec(node: Any) -> TensorSpec:
    datatype = _ONNX_TYPES.get(node.type, ("BYTES", "O"))[0]
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape or ())
    return TensorSpec(node.name, datatype, shape)


class ONNXModel(FileArrayModel):
    platform = "onnxruntime_onnx"
    suffixes = (".onnx",)

    def load(self) -> bool:
        import onnxruntime as ort

        options = ort.SessionOptions()
        threads = self.settings.get("intra_op_threads")
        if threads:
            options.intra_op_num_threads = int(threads)
        self._session: Any = ort.InferenceSession(
            str(model_file(self.path, self.suffixes)), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = self._session.get_inputs()
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        given = list(inputs.items())
        by_name = all(name in inputs for name in (i.name for i in self._inputs))
        if not by_name and len(given) != len(self._inputs):
            expected = ", ".join(i.name for i in self._inputs)
            raise InvalidInput(f"model {self.name!r} takes the inputs {expected}")
        for index, node in enumerate(self._inputs):
            array = inputs[node.name] if by_name else given[index][1]
            dtype = _ONNX_TYPES.get(node.type, ("", ""))[1]
            if dtype and dtype != "O" and array.dtype != np.dtype(dtype):
                array = array.astype(dtype)
            elif dtype == "O":
                array = np.asarray(
                    [x.decode() if isinstance(x, bytes) else x for x in array.reshape(-1)],
                    dtype=object,
                ).reshape(array.shape)
            feeds[node.name] = array
        results = self._session.run(None, feeds)
        outputs: dict[str, np.ndarray] = {}
        for name, value in zip(self._outputs, results, strict=True):
            if not isinstance(value, np.ndarray):
                raise InvalidInput(
                    f"output {name!r} is a {type(value).__name__}, not a tensor (convert "
                    "classifiers with zipmap disabled)"
                )
            outputs[name] = value
        return outputs

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            platform=self.platform,
            inputs=[_spec(i) for i in self._inputs],
            outputs=[_spec(o) for o in self._session.get_outputs()],
        )
