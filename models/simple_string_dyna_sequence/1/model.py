"""An accumulator per sequence, as Triton's dyna_sequence test backend keeps for string ids.

Each instance keeps a sum per correlation id (the sequence batcher keeps a sequence on one
instance). When READY: START sets the sum to INPUT's elements' sum, other requests add theirs, and
END adds the correlation id as INT32 and forgets the sequence; OUTPUT is the sum, in every element
of INPUT's shape. Not READY: an answer without outputs. The id is the request's (config.pbtxt says
why not a CORRID control): a decimal string, or a number; a string that is not a decimal 32-bit
integer fails the request, where the C++ backend's `std::stoi` took a leading number or stopped
the server.
"""

import json
import re
import time

import numpy as np
import triton_python_backend_utils as pb_utils

DECIMAL = re.compile(r"[+-]?[0-9]+")
INT32 = np.iinfo(np.int32)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        delay = parameters.get("execute_delay_ms", {}).get("string_value", "0")
        self.execute_delay_s = int(delay) / 1000
        self.sums: dict[int, int] = {}

    def execute(self, requests: list) -> list:
        if self.execute_delay_s:
            time.sleep(self.execute_delay_s)
        return [self._one(request) for request in requests]

    def _one(self, request: object) -> object:
        start, end, ready = (
            bool(pb_utils.get_input_tensor_by_name(request, name).as_numpy().flat[0])
            for name in ("START", "END", "READY")
        )
        if not ready:
            return pb_utils.InferenceResponse(output_tensors=[])
        corrid = _corrid(request.correlation_id())
        if corrid is None:
            error = pb_utils.TritonError(
                f"correlation id {request.correlation_id()!r} is not a decimal 32-bit integer"
            )
            return pb_utils.InferenceResponse(error=error)
        value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
        total = int(value.sum(dtype=np.int64)) + (0 if start else self.sums.get(corrid, 0))
        if end:
            total = _int32(total + corrid)
            self.sums.pop(corrid, None)
        else:
            total = self.sums[corrid] = _int32(total)
        output = np.full(value.shape, total, dtype=np.int32)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", output)])


def _int32(value: int) -> int:
    """`value` wrapped around as INT32 arithmetic wraps."""
    return (value - INT32.min) % 2**32 + INT32.min


def _corrid(given: int | str) -> int | None:
    """A numeric id as it is (the C++ backend's UINT64, cut to INT32 where it is added); a string
    one as the integer it spells, None if it spells none."""
    if isinstance(given, int):
        return given
    if DECIMAL.fullmatch(given) is None or not INT32.min <= int(given) <= INT32.max:
        return None
    return int(given)
