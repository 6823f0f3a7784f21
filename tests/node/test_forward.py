"""Forwarding mode's answers when Triton cannot serve, and in-flight counting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestClient, TestServer

from tritonfleet.net import free_port
from tritonfleet.node.forward import InFlight, TritonRelay
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.routes import build_app
from tritonfleet.proxy import aclose_session, new_session


async def answer_for(target: str | None) -> tuple[int, dict[str, str]]:
    metrics = NodeMetrics()
    session = new_session(connect_timeout_s=1.0)
    forwarder = TritonRelay(session, lambda: target, InFlight(metrics), metrics, timeout_s=2.0)
    app = build_app(lambda: {"node_id": "n1", "state": "ready"}, forwarder, metrics, max_body_bytes=1024)
    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/v2/models/simple/infer", data=b"{}")
            return response.status, await response.json()
    finally:
        await aclose_session(session)


async def test_a_triton_not_ready_answers_503_in_tritons_error_shape() -> None:
    """While Triton restarts the manager answers 503, which a gateway retries elsewhere."""
    assert await answer_for(None) == (503, {"error": "Triton on this node is not ready"})


async def test_an_unreachable_triton_answers_503() -> None:
    """A refused connection to Triton is a 503 too, not a 502 that no gateway would retry."""
    status, body = await answer_for(f"http://127.0.0.1:{free_port()}")
    assert status == 503 and "error" in body


async def test_in_flight_counts_until_the_last_request_ends() -> None:
    """wait_idle returns False while a request is tracked and True once it ends."""
    in_flight = InFlight(NodeMetrics())
    with in_flight.track():
        assert in_flight.count == 1
        assert await in_flight.wait_idle(0.01) is False
    waiter = asyncio.create_task(in_flight.wait_idle(1.0))
    assert await waiter is True and in_flight.count == 0


async def test_a_body_trickled_in_slower_than_the_timeout_is_refused_with_408() -> None:
    """A slow-loris client holds the manager no longer than a request to Triton may take."""
    metrics = NodeMetrics()
    session = new_session(connect_timeout_s=1.0)
    forwarder = TritonRelay(session, lambda: "http://unused", InFlight(metrics), metrics, timeout_s=0.5)
    app = build_app(lambda: {"node_id": "n1", "state": "ready"}, forwarder, metrics, max_body_bytes=1024)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b" "
            await asyncio.sleep(0.1)

    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/v2/models/simple/infer", data=trickle())
            assert (response.status, await response.json()) == (
                408,
                {"error": "request body not received within 0.5 s"},
            )
    finally:
        await aclose_session(session)
