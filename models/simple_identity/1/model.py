"""Triton's `simple_identity`: answers each request's INPUT0 as OUTPUT0, unchanged."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    @staticmethod
    def _one(request: object) -> object:
        strings = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", strings)])
