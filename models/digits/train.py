"""Train the `digits` demo classifier and write its weights for `1/model.py`.

The data is scikit-learn's bundled handwritten digits (8x8 images, pixel values 0..16), so
nothing is downloaded. Every HELD_OUT_EVERY-th image (index 0, 5, 10, ...) is never trained
on: tests and the printed accuracy use them. The network is a small multi-layer perceptron
whose forward pass the Triton model redoes in numpy alone.

Usage: python models/digits/train.py [OUTPUT.npz]   (default: models/digits/1/weights.npz)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

HELD_OUT_EVERY = 5
PIXEL_MAX = 16.0
DEFAULT_OUTPUT = Path(__file__).parent / "1" / "weights.npz"


def train(features: np.ndarray, labels: np.ndarray) -> MLPClassifier:
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=0)
    model.fit(features / PIXEL_MAX, labels)
    return model


def save(model: MLPClassifier, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"pixel_max": np.float32(PIXEL_MAX)}
    for i, (coef, intercept) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        arrays[f"coef_{i}"] = coef.astype(np.float32)
        arrays[f"intercept_{i}"] = intercept.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def main(argv: list[str]) -> int:
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    digits = load_digits()
    features, labels = digits.data, digits.target
    held = np.arange(len(labels)) % HELD_OUT_EVERY == 0
    model = train(features[~held], labels[~held])
    accuracy = model.score(features[held] / PIXEL_MAX, labels[held])
    save(model, output)
    print(f"digits: held-out accuracy {accuracy:.3f} on {held.sum()} images; weights in {output}")
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
