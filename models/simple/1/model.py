"""Triton's `simple` example on the Python backend: element-wise sum and difference."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    @staticmethod
    def _one(request: object) -> object:
        in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
        in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
        out0 = pb_utils.Tensor("OUTPUT0", (in0 + in1).astype(np.int32))
        out1 = pb_utils.Tensor("OUTPUT1", (in0 - in1).astype(np.int32))
        return pb_utils.InferenceResponse(output_tensors=[out0, out1])
