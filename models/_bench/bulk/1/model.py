"""BYTES_OUT zero bytes as one UINT8 tensor: a large answer for a tiny request."""

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

# More than any test asks for, so that a typo cannot fill the machine's memory.
LIMIT = 256 * 1024 * 1024


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            size = int(pb_utils.get_input_tensor_by_name(request, "BYTES_OUT").as_numpy()[0])
            if not 0 <= size <= LIMIT:
                error = pb_utils.TritonError(f"BYTES_OUT must be 0..{LIMIT}, not {size}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            output = pb_utils.Tensor("OUTPUT0", np.zeros(size, dtype=np.uint8))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
