"""A causal language model behind Triton's generate extension, on the Triton Python backend.

Decoupled: with `stream` true every generated token is one response (its text, which may be
empty while a multi-byte character is incomplete), then a flag-only final response; without it,
one response holding the whole text, as `/generate` requires. Decoding is greedy, with the KV
cache, so a prompt always gives the same text. It stops at `max_tokens` or the end token.

The model and tokenizer are loaded once from a local directory (`weights_dir` in config.pbtxt)
with `local_files_only=True`, so a node never reaches for a model hub. Each request is served
from its own thread, so that one long generation does not hold up the requests behind it.
"""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
DEFAULTS = {
    "weights_dir": "tiny",
    "device": "auto",
    "torch_threads": "1",
    "default_max_tokens": "16",
    "max_tokens_limit": "256",
    "max_prompt_chars": "4000",
}
# A request parameter (not a tensor) that spaces the responses, so that a client can watch a
# stream arrive token by token.
INTERVAL_PARAMETER = "token_interval_ms"
MAX_INTERVAL_MS = 1000


class RequestError(ValueError):
    """A request the model refuses; answered as INVALID_ARG (HTTP 400)."""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        given = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.params = {**DEFAULTS, **given}
        self.default_max_tokens = int(self.params["default_max_tokens"])
        self.max_tokens_limit = int(self.params["max_tokens_limit"])
        self.max_prompt_chars = int(self.params["max_prompt_chars"])
        self.device = self._device(self.params["device"])
        torch.set_num_threads(int(self.params["torch_threads"]))
        path = self._weights_dir(args["model_repository"])
        # Its progress bars would only fill the Triton log.
        transformers_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.context = int(self.model.config.max_position_embeddings)
        generation = self.model.generation_config
        self.suppressed = list(generation.suppress_tokens or [])
        ends = generation.eos_token_id
        self.end_tokens = set(ends if isinstance(ends, list) else [] if ends is None else [ends])
        self.threads: list[threading.Thread] = []

    def _weights_dir(self, model_repository: str) -> Path:
        path = Path(self.params["weights_dir"])
        if not path.is_absolute():
            # `model_repository` is this model's own folder, the one holding config.pbtxt.
            path = Path(model_repository) / path
        if not (path / "config.json").exists():
            raise pb_utils.TritonModelException(
                f"no model in {path} (config.json missing): build the tiny one with `make` or point "
                "`weights_dir` in config.pbtxt at real weights"
            )
        return path

    @staticmethod
    def _device(wanted: str) -> str:
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    def execute(self, requests: list) -> None:
        self.threads = [thread for thread in self.threads if thread.is_alive()]
        for request in requests:
            thread = threading.Thread(target=self._serve, args=(request,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return None

    def finalize(self) -> None:
        for thread in self.threads:
            thread.join()

    def _serve(self, request: object) -> None:
        """Answers one request; it always ends with the final flag, errors included."""
        sender = request.get_response_sender()
        try:
            prompt_ids, max_tokens, stream, interval_s = self._read(request)
            with torch.inference_mode():
                if stream:
                    self._stream(sender, prompt_ids, max_tokens, interval_s)
                else:
                    text = "".join(self._pieces(prompt_ids, max_tokens))
                    sender.send(self._response(text), flags=FINAL)
        except RequestError as exc:
            error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
        except Exception as exc:
            pb_utils.Logger.log_error(f"text_generation: generation failed: {exc!r}")
            error = pb_utils.TritonError(f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def _stream(self, sender: object, prompt_ids: list[int], max_tokens: int, interval_s: float) -> None:
        for index, piece in enumerate(self._pieces(prompt_ids, max_tokens)):
            if sender.is_cancelled():
                break
            if index and interval_s:
                time.sleep(interval_s)
            sender.send(self._response(piece))
        sender.send(flags=FINAL)

    @staticmethod
    def _response(text: str) -> object:
        output = pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))
        return pb_utils.InferenceResponse(output_tensors=[output])

    def _read(self, request: object) -> tuple[list[int], int, bool, float]:
        def scalar(name: str) -> object | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy().reshape(-1)[0]

        raw = scalar("text_input")
        # Triton counts the inputs only: `max_tokens` alone passes for the one required input.
        if raw is None:
            raise RequestError("text_input is required")
        prompt = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if len(prompt) > self.max_prompt_chars:
            raise RequestError(f"text_input is longer than {self.max_prompt_chars} characters")
        given = scalar("max_tokens")
        max_tokens = self.default_max_tokens if given is None else int(given)
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise RequestError(f"max_tokens must be between 1 and {self.max_tokens_limit}")
        prompt_ids = self.tokenizer.encode(prompt) or [self.tokenizer.bos_token_id]
        if len(prompt_ids) + max_tokens > self.context:
            raise RequestError(
                f"text_input ({len(prompt_ids)} tokens) and max_tokens ({max_tokens}) exceed the "
                f"model's context of {self.context} tokens"
            )
        stream = bool(scalar("stream") or False)
        return prompt_ids, max_tokens, stream, self._interval_s(request)

    @staticmethod
    def _interval_s(request: object) -> float:
        interval_ms = json.loads(request.parameters() or "{}").get(INTERVAL_PARAMETER, 0)
        if type(interval_ms) is not int or not 0 <= interval_ms <= MAX_INTERVAL_MS:
            raise RequestError(f"parameter {INTERVAL_PARAMETER} must be an integer in 0..{MAX_INTERVAL_MS}")
        return interval_ms / 1000

    def _pieces(self, prompt_ids: list[int], max_tokens: int) -> Iterator[str]:
        """The text of each generated token, detokenised incrementally (see TextPieces)."""
        pieces = TextPieces(self.tokenizer)
        for index, token in enumerate(self._tokens(prompt_ids, max_tokens)):
            yield pieces.add(token, last=index == max_tokens - 1)

    def _tokens(self, prompt_ids: list[int], max_tokens: int) -> Iterator[int]:
        """Greedy decoding with the KV cache: the prompt once, then one position per token."""
        ids = torch.tensor([prompt_ids], device=self.device)
        past = None
        for _ in range(max_tokens):
            out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1]
            if self.suppressed:
                logits[self.suppressed] = -float("inf")
            token = int(logits.argmax())
            if token in self.end_tokens:
                return
            yield token
            ids = torch.tensor([[token]], device=self.device)


class TextPieces:
    """Turns token ids into text one token at a time, as the tokens arrive.

    A byte-level token may hold part of a UTF-8 character; decoding it alone would give U+FFFD.
    So the whole sequence is decoded each time and the new text is what lies past what was
    already given out; while the text ends in an incomplete character the piece is empty (the
    token still gets its response) and the character comes with the token that completes it.
    The last token allowed gives out whatever is left; after an end token nothing is.
    """

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.given = 0

    def add(self, token: int, last: bool) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") and not last:
            return ""
        piece, self.given = text[self.given :], len(text)
        return piece
