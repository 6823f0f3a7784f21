"""Triton's `simple_dyna_sequence`: OUTPUT = READY * (INPUT + START + END * CORRID), in INT32.

As its ONNX graph has it: no state, and the UINT64 correlation id cut to its low 32 bits (read as
signed), as ONNX's Cast does.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    @staticmethod
    def _one(request: object) -> object:
        value, start, end, ready = (
            pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(np.int32)
            for name in ("INPUT", "START", "END", "READY")
        )
        corrid = pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy().astype(np.uint64)
        output = ready * (value + start + end * corrid.astype(np.int32))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", output)])
