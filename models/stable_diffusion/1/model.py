"""Stable Diffusion behind the text-to-image contract, on the Triton Python backend.

The pipeline is loaded once from a local directory (`weights_dir` in config.pbtxt) with
`local_files_only=True`, so a node never reaches for a model hub. Requests are validated here
too, since any client may call the model directly: a bad value is the caller's error (400),
never a crash of the model instance.
"""

import json
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from diffusers import StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging

# The CLIP text encoder reads 77 tokens; longer prompts are truncated by the tokenizer anyway.
DEFAULTS = {
    "weights_dir": "tiny",
    "device": "auto",
    "height": "512",
    "width": "512",
    "max_samples": "4",
    "max_steps": "150",
    "max_prompt_chars": "1000",
}


class RequestError(ValueError):
    """A request the contract refuses; answered as INVALID_ARG (HTTP 400)."""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        given = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.params = {**DEFAULTS, **given}
        self.height, self.width = int(self.params["height"]), int(self.params["width"])
        self.max_samples = int(self.params["max_samples"])
        self.max_steps = int(self.params["max_steps"])
        self.max_prompt_chars = int(self.params["max_prompt_chars"])
        self.device = self._device(self.params["device"])
        self.pipeline = self._load(self._weights_dir(args["model_repository"]))

    def _weights_dir(self, model_repository: str) -> Path:
        path = Path(self.params["weights_dir"])
        if not path.is_absolute():
            # `model_repository` is this model's own folder, the one holding config.pbtxt.
            path = Path(model_repository) / path
        if not (path / "model_index.json").exists():
            raise pb_utils.TritonModelException(
                f"no diffusers pipeline in {path} (model_index.json missing): build the tiny one with "
                "`make` or point `weights_dir` in config.pbtxt at real weights"
            )
        return path

    @staticmethod
    def _device(wanted: str) -> str:
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    def _load(self, path: Path) -> StableDiffusionPipeline:
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        # Its progress bars would only fill the Triton log.
        diffusers_logging.disable_progress_bar()
        pipeline = StableDiffusionPipeline.from_pretrained(
            path, local_files_only=True, dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.device)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                images = self._generate(**self._read(request))
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("IMAGES", images)]))
        return responses

    def _read(self, request: object) -> dict:
        def scalar(name: str) -> object:
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]

        raw = scalar("PROMPT")
        prompt = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
        values = {
            "prompt": prompt,
            "samples": int(scalar("SAMPLES")),
            "steps": int(scalar("STEPS")),
            "guidance_scale": float(scalar("GUIDANCE_SCALE")),
            "seed": int(scalar("SEED")),
        }
        self._check(values)
        return values

    def _check(self, values: dict) -> None:
        if not values["prompt"]:
            raise RequestError("PROMPT is empty")
        if len(values["prompt"]) > self.max_prompt_chars:
            raise RequestError(f"PROMPT is longer than {self.max_prompt_chars} characters")
        if not 1 <= values["samples"] <= self.max_samples:
            raise RequestError(f"SAMPLES must be between 1 and {self.max_samples}")
        if not 1 <= values["steps"] <= self.max_steps:
            raise RequestError(f"STEPS must be between 1 and {self.max_steps}")
        if values["seed"] < 0:
            raise RequestError("SEED must be 0 or more")
        if not 0.0 <= values["guidance_scale"] <= 50.0:
            raise RequestError("GUIDANCE_SCALE must be between 0 and 50")

    def _generate(
        self, prompt: str, samples: int, steps: int, guidance_scale: float, seed: int
    ) -> np.ndarray:
        # The generator lives on the CPU so that a seed gives the same image on every device.
        generator = torch.Generator("cpu").manual_seed(seed)
        with torch.inference_mode():
            result = self.pipeline(
                [prompt] * samples,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                height=self.height,
                width=self.width,
                generator=generator,
                output_type="np",
            )
        # float [0, 1] HWC → uint8, as the contract returns images.
        return (np.clip(result.images, 0.0, 1.0) * 255).round().astype(np.uint8)
