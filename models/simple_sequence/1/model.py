"""Triton's `simple_sequence`: OUTPUT = READY * (INPUT + START), in INT32, as its ONNX graph has it.

No state: the sequence batcher's controls are the only thing that differs along a sequence. A
request with READY 0 fills an empty slot of a Direct batch; its answer is dropped by Triton.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    @staticmethod
    def _one(request: object) -> object:
        value, start, ready = (
            pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(np.int32)
            for name in ("INPUT", "START", "READY")
        )
        output = pb_utils.Tensor("OUTPUT", ready * (value + start))
        return pb_utils.InferenceResponse(output_tensors=[output])
