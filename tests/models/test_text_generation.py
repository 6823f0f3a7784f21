"""text_generation: the tiny GPT-2 behind Triton's generate extension, on one real tritonserver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc as triton_grpc

from tests.e2e.test_grpc import Stream
from tests.node.fakes import MODELS, repository
from tests.node.test_triton import launched
from tritonfleet.net import host_port
from tritonfleet.node.triton import TritonProcess

MODEL = "text_generation"
TINY = MODELS / MODEL / "tiny"
# config.pbtxt's default_max_tokens.
DEFAULT_MAX_TOKENS = 16

# One tritonserver for the module: its tests share the module's event loop with the fixture.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def ensure_tiny_model() -> None:
    """What `make` builds; built here too, so that the tests run on a fresh checkout."""
    if not (TINY / "model.safetensors").exists():
        quiet = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        script = MODELS / MODEL / "build_tiny.py"
        subprocess.run([sys.executable, str(script)], check=True, env={**os.environ, **quiet})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonProcess]:
    ensure_tiny_model()
    repo = repository(tmp_path_factory.mktemp("text-generation") / "models", [MODEL])
    async with launched(repo) as server:
        await server.start()
        yield server


def url(triton: TritonProcess, endpoint: str) -> str:
    return f"{triton.urls.http}/v2/models/{MODEL}/{endpoint}"


async def generate(triton: TritonProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url(triton, "generate"), json=body)


def events(answer: httpx.Response) -> list[dict[str, Any]]:
    """The JSON of each server-sent `data:` event."""
    chunks = [chunk for chunk in answer.text.split("\n\n") if chunk]
    assert all(chunk.startswith("data: ") for chunk in chunks), answer.text
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]


async def test_generate_answers_the_whole_text_as_json(triton: TritonProcess) -> None:
    """`/generate` answers one JSON object with the generated text, the same for the same prompt."""
    first = await generate(triton, {"text_input": "hi", "max_tokens": 8})
    again = await generate(triton, {"text_input": "hi", "max_tokens": 8})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert body["model_name"] == MODEL and body["model_version"] == "1"
    assert isinstance(body["text_output"], str) and len(body["text_output"]) >= 8
    assert again.json()["text_output"] == body["text_output"]


@pytest.mark.parametrize("max_tokens", [None, 5])
async def test_generate_stream_sends_one_event_per_token(
    triton: TritonProcess, max_tokens: int | None
) -> None:
    """`/generate_stream` with `stream` sends one SSE event per token, `max_tokens` of them
    (config.pbtxt's default when absent), whose texts add up to `/generate`'s answer."""
    body: dict[str, Any] = {"text_input": "What is Triton?"}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    whole = (await generate(triton, body)).json()["text_output"]
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(url(triton, "generate_stream"), json={**body, "stream": True})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    pieces = [event["text_output"] for event in events(answer)]
    assert len(pieces) == (max_tokens or DEFAULT_MAX_TOKENS)
    assert all(pieces)  # the tiny model writes printable ASCII only: no token's text is held back
    assert "".join(pieces) == whole


async def test_stream_events_arrive_as_the_tokens_are_produced(triton: TritonProcess) -> None:
    """With the tokens 100 ms apart, the first event is read while the last is still to come."""
    body = {"text_input": "hi", "max_tokens": 5, "stream": True, "parameters": {"token_interval_ms": 100}}
    arrivals = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", url(triton, "generate_stream"), json=body) as answer,
    ):
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    # Four intervals lie between the first token and the last; a buffered answer has none.
    assert arrivals[-1] - arrivals[0] >= 0.3


def grpc_stream(triton: TritonProcess, text: str, max_tokens: int) -> list[Any]:
    """The results of one streamed request, up to and including its flag-only final response."""
    client = triton_grpc.InferenceServerClient(host_port(triton.urls.grpc))
    stream = Stream(client)
    inputs = []
    for name, value, datatype in (
        ("text_input", np.array([text.encode()], dtype=np.object_), "BYTES"),
        ("max_tokens", np.array([max_tokens], dtype=np.int32), "INT32"),
        ("stream", np.array([True]), "BOOL"),
    ):
        tensor = triton_grpc.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    try:
        client.async_stream_infer(MODEL, inputs, request_id="g", enable_empty_final_response=True)
        results = []
        while not results or not results[-1].get_response().parameters["triton_final_response"].bool_param:
            ((result, error),) = stream.take(1)
            assert error is None
            results.append(result)
        return results
    finally:
        stream.close()
        client.close()


async def test_grpc_streaming_gets_one_response_per_token_then_the_final(triton: TritonProcess) -> None:
    """Over gRPC the same request streams one response per token, then a final one with no output."""
    whole = (await generate(triton, {"text_input": "hello", "max_tokens": 6})).json()["text_output"]
    results = await asyncio.to_thread(grpc_stream, triton, "hello", 6)
    *tokens, final = results
    assert len(tokens) == 6
    assert "".join(result.as_numpy("text_output")[0].decode() for result in tokens) == whole
    assert {result.get_response().id for result in results} == {"g"}
    assert final.get_response().outputs == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "missing required input(s) ['text_input']"),
        ({"max_tokens": 8}, "text_input is required"),
        ({"text_input": "hi", "max_tokens": 0}, "max_tokens must be between 1 and 256"),
        ({"text_input": "hi", "max_tokens": 257}, "max_tokens must be between 1 and 256"),
    ],
)
async def test_a_bad_request_is_refused_with_400(
    triton: TritonProcess, body: dict[str, Any], error: str
) -> None:
    answer = await generate(triton, body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]
