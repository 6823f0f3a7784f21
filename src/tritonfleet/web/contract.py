"""The text-to-image contract of the original design, and the checks of a generate request.

A model implements it when its metadata has these inputs and output, whatever its name:
PROMPT BYTES, SAMPLES INT32, STEPS INT32, GUIDANCE_SCALE FP32, SEED INT64 → IMAGES UINT8
([samples, height, width, channels]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonfleet.web.catalog import ModelInfo, TensorSpec
from tritonfleet.web.errors import BadInput
from tritonfleet.web.kserve import Tensor

INPUTS = {"PROMPT": "BYTES", "SAMPLES": "INT32", "STEPS": "INT32", "GUIDANCE_SCALE": "FP32", "SEED": "INT64"}
OUTPUT = ("IMAGES", "UINT8")

# The page's limits; a model may refuse less (its own maxima come back as a 400 and are shown).
MAX_PROMPT_CHARS = 1000
MIN_STEPS, MAX_STEPS = 1, 150
MIN_SAMPLES, MAX_SAMPLES = 1, 4
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 50.0
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Prompt:
    """A checked generate request."""

    prompt: str
    steps: int
    samples: int
    guidance_scale: float
    seed: int


def implements(model: ModelInfo) -> bool:
    for name, datatype in INPUTS.items():
        spec = model.input(name)
        if spec is None or spec.datatype != datatype or _count(spec) != 1:
            return False
    output = model.output(OUTPUT[0])
    return output is not None and output.datatype == OUTPUT[1]


def limits() -> dict[str, object]:
    return {
        "max_prompt_chars": MAX_PROMPT_CHARS,
        "steps": [MIN_STEPS, MAX_STEPS],
        "samples": [MIN_SAMPLES, MAX_SAMPLES],
        "guidance_scale": [MIN_GUIDANCE, MAX_GUIDANCE],
        "seed": [0, MAX_SEED],
    }


def check(prompt: str, steps: int, samples: int, guidance_scale: float, seed: int) -> Prompt:
    """The request, or BadInput saying in words what is wrong with it."""
    text = prompt.strip()
    if not text:
        raise BadInput("the prompt is empty: describe the image you want")
    if len(text) > MAX_PROMPT_CHARS:
        raise BadInput(f"the prompt is too long: {len(text)} characters, at most {MAX_PROMPT_CHARS}")
    _within("steps", steps, MIN_STEPS, MAX_STEPS)
    _within("samples", samples, MIN_SAMPLES, MAX_SAMPLES)
    _within("guidance scale", guidance_scale, MIN_GUIDANCE, MAX_GUIDANCE)
    _within("seed", seed, 0, MAX_SEED)
    return Prompt(text, steps, samples, guidance_scale, seed)


def _within(what: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise BadInput(f"{what} must be between {low} and {high}; got {value}")


def tensors(model: ModelInfo, request: Prompt) -> list[Tensor]:
    """The contract's inputs, each shaped as the model declares it (batched or not)."""
    values = {
        "PROMPT": np.array([request.prompt.encode()], dtype=np.object_),
        "SAMPLES": np.array([request.samples], dtype=np.int32),
        "STEPS": np.array([request.steps], dtype=np.int32),
        "GUIDANCE_SCALE": np.array([request.guidance_scale], dtype=np.float32),
        "SEED": np.array([request.seed], dtype=np.int64),
    }
    found = [model.input(name) for name in INPUTS]
    specs = [spec for spec in found if spec is not None]
    return [Tensor(spec.name, spec.datatype, values[spec.name].reshape(_one(spec))) for spec in specs]


def _one(spec: TensorSpec) -> tuple[int, ...]:
    return tuple(1 if dim == -1 else dim for dim in spec.shape)


def _count(spec: TensorSpec) -> int:
    return int(np.prod(_one(spec))) if spec.shape else 1
