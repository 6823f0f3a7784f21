"""TritonProcess: a real tritonserver from the nvidia-pytriton wheel, serving the demo models."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton_http
from sklearn.datasets import load_digits

from tests.node.fakes import MODELS, alive, process_tree, repository, shm_regions
from tritonfleet.net import host_port
from tritonfleet.node.dist import locate
from tritonfleet.node.endpoints import TritonPorts
from tritonfleet.node.observe import TritonObserver
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.triton import TritonProcess


@asynccontextmanager
async def launched(repo: Path, ports: TritonPorts | None = None) -> AsyncIterator[TritonProcess]:
    async with httpx.AsyncClient() as client:
        options = TritonOptions(repo, ports=ports or TritonPorts(), exit_timeout_s=1.0)
        triton = TritonProcess(options, locate(), TritonObserver(client).ready)
        try:
            yield triton
        finally:
            await client.aclose()  # Triton's graceful stop waits for open connections
            await triton.stop()
            triton.close()


def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> triton_http.InferResult:
    client = triton_http.InferenceServerClient(host_port(url))
    tensors = []
    for name, array in inputs.items():
        tensor = triton_http.InferInput(name, list(array.shape), triton_http.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        return client.infer(model, tensors)
    finally:
        client.close()


async def test_serves_simple_and_digits_from_the_project_repository() -> None:
    """Triton started on `models/` adds and subtracts with `simple`, and `digits` labels held-out
    images (every fifth, never trained on) correctly."""
    assert (MODELS / "digits" / "1" / "weights.npz").exists(), "run models/digits/train.py (make install)"
    digits = load_digits()
    images, labels = digits.images[::5][:64].astype(np.float32), digits.target[::5][:64]
    async with launched(MODELS) as triton:
        await triton.start()
        a, b = np.arange(16, dtype=np.int32).reshape(1, 16), np.ones((1, 16), dtype=np.int32)
        simple = infer(triton.urls.http, "simple", {"INPUT0": a, "INPUT1": b})
        classified = infer(triton.urls.http, "digits", {"IMAGE": images})
    assert simple.as_numpy("OUTPUT0").tolist() == (a + b).tolist()
    assert simple.as_numpy("OUTPUT1").tolist() == (a - b).tolist()
    predicted = classified.as_numpy("LABEL").ravel()
    assert predicted[0] == labels[0]
    assert (predicted == labels).mean() > 0.9
    assert np.allclose(classified.as_numpy("PROBABILITIES").sum(axis=1), 1.0, atol=1e-5)


async def test_a_killed_tritonserver_takes_its_backend_stubs_with_it(tmp_path: Path) -> None:
    """SIGKILL to tritonserver ends the whole tree at once (stubs included), with status 137, and
    leaves none of the stubs' shared-memory regions in /dev/shm."""
    async with launched(repository(tmp_path / "models", ["simple", "digits"])) as triton:
        await triton.start()
        assert triton.pid is not None
        tree = process_tree(triton.pid)
        server_pid = triton.server_pid()
        assert server_pid is not None and len(tree) >= 4  # guard, tritonserver, two stubs
        assert shm_regions(triton.shm_prefix), "the stubs' shared memory"
        os.kill(server_pid, signal.SIGKILL)
        assert await triton.wait() == 128 + signal.SIGKILL
        assert alive(tree) == set()
        assert shm_regions(triton.shm_prefix) == []


async def test_start_retries_on_fresh_ports_when_a_picked_port_is_taken(tmp_path: Path) -> None:
    """When another process takes the HTTP port picked for Triton, it starts on fresh ports."""
    async with launched(repository(tmp_path / "models", ["simple"])) as triton:
        taken = triton.ports.http
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", taken))  # bound, not listening: Triton's bind fails at once
            await triton.start()
        assert triton.ports.http != taken
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{triton.urls.http}/v2/health/ready")).status_code == 200
