"""Triton's `simple_string` on the Python backend: sum and difference of decimal strings.

Triton's own is an ONNX graph that casts both inputs to INT32, adds and subtracts, and casts the
results back to strings; this does the same, wrapping around as INT32 arithmetic does. An
element that is not a decimal 32-bit integer fails the request.
"""

import re

import numpy as np
import triton_python_backend_utils as pb_utils

DECIMAL = re.compile(rb"[+-]?[0-9]+")
INT32 = np.iinfo(np.int32)


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    @staticmethod
    def _one(request: object) -> object:
        try:
            in0 = _integers("INPUT0", pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy())
            in1 = _integers("INPUT1", pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy())
        except ValueError as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        out0 = pb_utils.Tensor("OUTPUT0", _decimals(in0 + in1))
        out1 = pb_utils.Tensor("OUTPUT1", _decimals(in0 - in1))
        return pb_utils.InferenceResponse(output_tensors=[out0, out1])


def _integers(name: str, strings: np.ndarray) -> np.ndarray:
    values = np.empty(strings.shape, dtype=np.int32)
    for index, text in np.ndenumerate(strings):
        if DECIMAL.fullmatch(text) is None or not INT32.min <= int(text) <= INT32.max:
            raise ValueError(f"{name} holds {text!r}, not a decimal 32-bit integer")
        values[index] = int(text)
    return values


def _decimals(values: np.ndarray) -> np.ndarray:
    """BYTES (an object array of bytes) of the decimal forms of INT32 values."""
    return np.array([str(value).encode() for value in values.flat], dtype=np.object_).reshape(values.shape)
