"""HealthLink against a health checker simulated by httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.node.fakes import wait_until
from tritonfleet.node.backoff import Backoff
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.registrar import HealthLink
from tritonfleet.protocol import Heartbeat, NodeState

FAST = Backoff(base_s=0.01, max_s=0.05)
Handler = Callable[[httpx.Request], httpx.Response]


def heartbeat(state: NodeState = NodeState.READY) -> Heartbeat:
    return Heartbeat(node_id="n1", manager_url="http://m", triton_http_url="http://t", state=state)


def registered(interval_s: float = 10.0) -> httpx.Response:
    return httpx.Response(200, json={"node_id": "n1", "heartbeat_interval_s": interval_s, "ttl_s": 3})


@asynccontextmanager
async def link_to(
    handler: Handler, snapshot: Callable[[], Heartbeat] = heartbeat
) -> AsyncIterator[HealthLink]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        yield HealthLink("http://health/", "tok", snapshot, client, FAST, NodeMetrics())


def failures(link: HealthLink) -> float | None:
    name = "tritonfleet_node_heartbeat_failures_total"
    return link.metrics.registry.get_sample_value(name, {"health_url": "http://health"})


async def run_for(link: HealthLink, seconds: float) -> None:
    task = asyncio.create_task(link.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_register_retries_until_accepted_then_heartbeats_at_the_given_interval() -> None:
    """Two 503s, then a registration whose interval (50 ms) paces the heartbeats that follow."""
    seen: list[tuple[str, str, str | None]] = []
    answers = [httpx.Response(503), httpx.Response(503), registered(interval_s=0.05)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("Authorization")))
        return answers.pop(0) if answers else httpx.Response(200, json={})

    async with link_to(handler) as link:
        await run_for(link, 0.3)
    assert [path for _, path, _ in seen[:3]] == ["/v1/nodes/register"] * 3
    beats = [path for _, path, _ in seen[3:]]
    assert 3 <= len(beats) <= 7 and set(beats) == {"/v1/nodes/n1/heartbeat"}
    assert {auth for _, _, auth in seen} == {"Bearer tok"}
    assert failures(link) == 2


async def test_a_refused_token_is_logged_as_an_error_and_retried_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 is an error in the log, and registration is retried at the longest back-off only."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(401, json={"error": "unauthorized"})

    async with link_to(handler) as link:
        with caplog.at_level(logging.ERROR):
            await run_for(link, 0.2)
    assert 2 <= len(calls) <= 5  # every 50 ms, not every 10 ms
    assert any("cluster token" in record.getMessage() for record in caplog.records)


async def test_poke_sends_the_next_heartbeat_at_once() -> None:
    """With a 10 s interval, a poke gets the changed state to the health checker within moments."""
    bodies: list[dict[str, str]] = []
    state = [NodeState.STARTING]

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return registered(interval_s=10.0) if request.url.path.endswith("/register") else httpx.Response(200)

    async with link_to(handler, lambda: heartbeat(state[0])) as link:
        task = asyncio.create_task(link.run())
        await wait_until(lambda: len(bodies) == 2, 1, "registration and first heartbeat")
        state[0] = NodeState.READY
        link.poke()
        await wait_until(lambda: len(bodies) == 3, 0.5, "a heartbeat right after the poke")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert bodies[-1]["state"] == "ready"


async def test_farewell_sends_draining_then_delete_and_never_raises() -> None:
    """Farewell is a last heartbeat and a DELETE; an unreachable health checker is only logged."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json={})

    async with link_to(handler, lambda: heartbeat(NodeState.DRAINING)) as link:
        await link.farewell()
    assert seen == [("POST", "/v1/nodes/n1/heartbeat"), ("DELETE", "/v1/nodes/n1")]

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with link_to(unreachable) as link:
        await link.farewell()
    assert failures(link) == 2


async def test_a_heartbeat_answered_404_registers_again() -> None:
    """A health checker that lost the node and does not upsert gets a fresh registration."""
    paths: list[str] = []
    answers = [registered(interval_s=0.02), httpx.Response(404), registered(interval_s=10.0)]

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return answers.pop(0) if answers else httpx.Response(200)

    async with link_to(handler) as link:
        await run_for(link, 0.1)
    assert paths[:3] == ["/v1/nodes/register", "/v1/nodes/n1/heartbeat", "/v1/nodes/register"]
