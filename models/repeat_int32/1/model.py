"""Triton's `repeat_int32`: one response per element of IN, then the final flag.

As Triton's C++ `repeat` backend does: the responses of a request come from a thread of its own,
the i-th after DELAY[i] ms with OUT = IN[i] and IDX = i, and `execute` holds the instance WAIT ms
before it returns, so that a WAIT shorter than the delays lets the next request start while this
one still sends.
"""

import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.threads: list[threading.Thread] = []

    def execute(self, requests: list) -> None:
        self.threads = [thread for thread in self.threads if thread.is_alive()]
        wait_ms = 0
        for request in requests:
            sender = request.get_response_sender()
            values, delays, wait = (
                pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in ("IN", "DELAY", "WAIT")
            )
            if values.shape != delays.shape:
                error = pb_utils.TritonError(
                    f"expected IN and DELAY shape to match, got {list(values.shape)} and {list(delays.shape)}"
                )
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            thread = threading.Thread(target=_repeat, args=(sender, values, delays), daemon=True)
            thread.start()
            self.threads.append(thread)
            wait_ms = max(wait_ms, int(wait.flat[0]))
        time.sleep(wait_ms / 1000)
        return None

    def finalize(self) -> None:
        for thread in self.threads:
            thread.join()


def _repeat(sender: object, values: np.ndarray, delays: np.ndarray) -> None:
    for index, (value, delay_ms) in enumerate(zip(values.flat, delays.flat, strict=True)):
        time.sleep(int(delay_ms) / 1000)
        out = pb_utils.Tensor("OUT", np.array([value], dtype=np.int32))
        idx = pb_utils.Tensor("IDX", np.array([index], dtype=np.uint32))
        sender.send(pb_utils.InferenceResponse(output_tensors=[out, idx]))
    sender.send(flags=FINAL)
