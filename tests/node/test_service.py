"""NodeManager in this process, with a real tritonserver and fake health checkers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton_http

from tests.node.fakes import FakeHealthChecker, node_config, repository, wait_until
from tritonfleet.config import FleetConfig
from tritonfleet.net import host_port
from tritonfleet.node.dist import locate
from tritonfleet.node.observe import TritonObserver
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.service import NodeManager
from tritonfleet.node.triton import TritonProcess
from tritonfleet.protocol import ModelRef, NodeState

SIMPLE = [ModelRef(name="simple", version="1")]


@asynccontextmanager
async def running(config: FleetConfig) -> AsyncIterator[NodeManager]:
    manager = NodeManager(config)
    try:
        await manager.start()
        yield manager
    finally:
        await manager.shutdown()


def ready_with_simple(checker: FakeHealthChecker) -> bool:
    return any(hb.state is NodeState.READY and hb.models == SIMPLE for hb in checker.heartbeats())


def infer_simple(url: str) -> tuple[np.ndarray, np.ndarray]:
    client = triton_http.InferenceServerClient(host_port(url))
    a, b = np.arange(16, dtype=np.int32).reshape(1, 16), np.full((1, 16), 3, dtype=np.int32)
    inputs = [triton_http.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple", inputs, headers={"X-Request-ID": "test-1"})
    client.close()
    return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


async def test_registers_with_every_health_checker_and_heartbeats_ready_models(tmp_path: Path) -> None:
    """Each health checker gets a `starting` registration, then `ready` heartbeats listing `simple`,
    then on shutdown a `draining` heartbeat and a DELETE, all with the cluster token."""
    async with FakeHealthChecker() as first, FakeHealthChecker() as second:
        async with running(node_config(tmp_path, [first.url, second.url])) as manager:
            for checker in (first, second):
                await wait_until(lambda c=checker: ready_with_simple(c), 30, "a ready heartbeat")
            async with httpx.AsyncClient() as client:
                ping = (await client.get(f"{manager.manager_url}/ping")).json()
                ready = await client.get(f"{first.heartbeats()[-1].triton_http_url}/v2/health/ready")
            assert ping == {"status": "ok", "node_id": manager.node_id, "state": "ready"}
            assert ready.status_code == 200
        for checker in (first, second):
            assert all(call.authorized for call in checker.calls)
            assert checker.calls[0].path == "/v1/nodes/register"
            assert checker.heartbeats()[0].state is NodeState.STARTING
            assert checker.heartbeats()[-1].state is NodeState.DRAINING
            assert checker.paths("DELETE") == [f"/v1/nodes/{manager.node_id}"]


async def test_forwarding_mode_passes_an_infer_through_the_manager(tmp_path: Path) -> None:
    """An infer sent to the manager's URL reaches Triton and comes back with the sum and difference."""
    async with FakeHealthChecker() as checker, running(node_config(tmp_path, [checker.url])) as manager:
        await wait_until(lambda: manager.status.state is NodeState.READY, 30, "ready")
        total, difference = await asyncio.to_thread(infer_simple, manager.manager_url)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{manager.manager_url}/metrics")).text
    assert total.tolist() == [[i + 3 for i in range(16)]]
    assert difference.tolist() == [[i - 3 for i in range(16)]]
    assert 'tritonfleet_node_forwarded_requests_total{code="200",route="infer"} 1.0' in metrics


async def test_restarts_a_killed_tritonserver_and_reports_starting_then_ready(tmp_path: Path) -> None:
    """A SIGKILLed tritonserver is reported at once as `starting` without models, then `ready` again
    on the same URL once restarted."""
    async with FakeHealthChecker() as checker, running(node_config(tmp_path, [checker.url])) as manager:
        await wait_until(lambda: ready_with_simple(checker), 30, "a ready heartbeat")
        assert manager.triton is not None
        server_pid = manager.triton.server_pid()
        assert server_pid is not None
        url_before = checker.heartbeats()[-1].triton_http_url
        seen = len(checker.calls)
        os.kill(server_pid, signal.SIGKILL)
        await wait_until(lambda: manager.status.state is NodeState.STARTING, 5, "starting")
        await wait_until(lambda: manager.status.state is NodeState.READY, 30, "ready again")
        await wait_until(lambda: ready_with_simple_after(checker, seen), 5, "a ready heartbeat after restart")
        states = [hb.state for hb in checker.heartbeats()[seen:]]
        starting = checker.heartbeats()[seen + states.index(NodeState.STARTING)]
        assert starting.models == []
        assert checker.heartbeats()[-1].triton_http_url == url_before
        assert manager.triton.server_pid() not in (None, server_pid)


def ready_with_simple_after(checker: FakeHealthChecker, seen: int) -> bool:
    beats = checker.heartbeats()[seen:]
    return any(hb.state is NodeState.READY and hb.models == SIMPLE for hb in beats)


async def test_attached_to_a_running_triton_it_announces_it_and_leaves_it_running(tmp_path: Path) -> None:
    """With `triton_url` the manager starts no Triton: it heartbeats that one's URLs and READY models,
    and its shutdown leaves that Triton serving."""
    repo = repository(tmp_path / "attached", ["simple"])
    async with httpx.AsyncClient() as client:
        triton = TritonProcess(
            TritonOptions(repo, exit_timeout_s=1.0), locate(), TritonObserver(client).ready
        )
        try:
            await triton.start()
            urls = triton.urls
            attach = {
                "triton_url": urls.http,
                "triton_grpc_url": urls.grpc,
                "triton_metrics_url": urls.metrics,
            }
            async with (
                FakeHealthChecker() as checker,
                running(node_config(tmp_path, [checker.url], **attach)) as manager,
            ):
                await wait_until(lambda: ready_with_simple(checker), 10, "a ready heartbeat")
                assert manager.triton is None
            announced = checker.heartbeats()[-1]
            assert (announced.triton_http_url, announced.triton_metrics_url) == (urls.http, urls.metrics)
            assert (await client.get(f"{urls.http}/v2/health/ready")).status_code == 200
        finally:
            await client.aclose()
            await triton.stop()
            triton.close()
