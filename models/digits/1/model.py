"""Forward pass of the `digits` classifier in numpy: ReLU hidden layers, softmax output."""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        path = Path(args["model_repository"]) / args["model_version"] / "weights.npz"
        with np.load(path) as weights:
            self.pixel_max = float(weights["pixel_max"])
            count = sum(1 for key in weights.files if key.startswith("coef_"))
            self.layers = [(weights[f"coef_{i}"], weights[f"intercept_{i}"]) for i in range(count)]

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request: object) -> object:
        images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
        probabilities = self.forward(images.reshape(len(images), -1) / self.pixel_max)
        labels = probabilities.argmax(axis=1).astype(np.int64).reshape(-1, 1)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("PROBABILITIES", probabilities.astype(np.float32)),
                pb_utils.Tensor("LABEL", labels),
            ]
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        for coef, intercept in self.layers[:-1]:
            x = np.maximum(x @ coef + intercept, 0.0)
        coef, intercept = self.layers[-1]
        logits = x @ coef + intercept
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
