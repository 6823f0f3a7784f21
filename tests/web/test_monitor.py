from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.web.fakes import CLUSTER_TOKEN, GATEWAY, HEALTH, health_checker
from tritonfleet.web.monitor import ClusterMonitor

METRICS = "# TYPE nv_inference_request_success counter\nnv_inference_request_success 4\n"


class World:
    """A health checker listing NODE; the node's manager, Triton and the gateway, each switchable."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.slow: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("refused", request=request)
        if host in self.slow:
            raise httpx.ReadTimeout("slow", request=request)
        if host == "health.test":
            return health_checker(request)
        # The cluster token is for the health checkers only.
        assert "Authorization" not in request.headers
        if request.url.path == "/metrics":
            return httpx.Response(200, text=METRICS)
        return httpx.Response(200)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def watcher(world: World) -> AsyncIterator[ClusterMonitor]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(world)) as client:
        yield ClusterMonitor(client, [HEALTH], GATEWAY, interval_s=0.5, token=CLUSTER_TOKEN)


def status(watcher: ClusterMonitor) -> str:
    return str(watcher.snapshot()["nodes"][0]["status"])


async def test_a_node_whose_manager_refuses_connections_is_down_at_the_next_look(
    world: World, watcher: ClusterMonitor
) -> None:
    await watcher.tick()
    assert status(watcher) == "up"
    world.down.add("manager.test")
    await watcher.tick()
    assert status(watcher) == "down"
    world.down.clear()
    await watcher.tick()
    assert status(watcher) == "up"


async def test_a_node_that_times_out_twice_in_a_row_is_down(world: World, watcher: ClusterMonitor) -> None:
    world.slow.add("triton.test")
    await watcher.tick()
    assert status(watcher) == "up"
    await watcher.tick()
    assert status(watcher) == "down"


async def test_the_gateway_and_health_checker_being_down_is_shown(
    world: World, watcher: ClusterMonitor
) -> None:
    await watcher.tick()
    world.down |= {"gateway.test", "health.test"}
    await watcher.tick()
    snapshot = watcher.snapshot()
    assert snapshot["gateway_up"] is False and snapshot["health_checker_up"] is False
    assert snapshot["nodes"][0]["node_id"] == "node-1", "the last listing is kept"


async def test_a_waiting_reader_gets_the_next_snapshot_as_soon_as_it_is_taken(
    watcher: ClusterMonitor,
) -> None:
    waiting = asyncio.create_task(watcher.next_snapshot(since=0, timeout_s=5))
    await asyncio.sleep(0)
    await watcher.tick()
    snapshot = await asyncio.wait_for(waiting, 1)
    assert snapshot["version"] == 1 and snapshot["nodes"]
    assert (await watcher.next_snapshot(since=1, timeout_s=0.01))["version"] == 1, "a timeout answers too"
