"""Echoes INPUT0 after sleeping the service time once per batch.

The service time is the config parameter `service_time_ms`; a request may override it with
its own parameter `service_time_ms` (the batch then sleeps the longest asked for).
"""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.service_time_ms = float(config["parameters"]["service_time_ms"]["string_value"])

    def execute(self, requests):
        asked = [json.loads(r.parameters() or "{}").get("service_time_ms") for r in requests]
        asked = [float(ms) for ms in asked if ms is not None]
        time.sleep((max(asked) if asked else self.service_time_ms) / 1000)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data)]))
        return responses
