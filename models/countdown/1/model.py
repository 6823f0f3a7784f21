"""Counts down from N-1 to 0, one response each, then closes the request with the final flag.

Each request is answered from its own thread, so that one long countdown does not hold up the
requests behind it: a decoupled model may respond after `execute` has returned.
"""

import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

MAX_N = 10_000
MAX_INTERVAL_MS = 10_000
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        self.threads = [thread for thread in self.threads if thread.is_alive()]
        for request in requests:
            thread = threading.Thread(target=self._count, args=(request,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join()

    @staticmethod
    def _count(request):
        sender = request.get_response_sender()
        n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy().reshape(-1)[0])
        interval = pb_utils.get_input_tensor_by_name(request, "INTERVAL_MS")
        interval_ms = int(interval.as_numpy().reshape(-1)[0]) if interval is not None else 0
        if not (0 <= n <= MAX_N and 0 <= interval_ms <= MAX_INTERVAL_MS):
            error = pb_utils.TritonError(f"N must be in 0..{MAX_N} and INTERVAL_MS in 0..{MAX_INTERVAL_MS}")
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
            return
        for remaining in range(n - 1, -1, -1):
            count = pb_utils.Tensor("COUNT", np.array([remaining], dtype=np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[count]))
            if remaining and interval_ms:
                time.sleep(interval_ms / 1000)
        sender.send(flags=FINAL)
