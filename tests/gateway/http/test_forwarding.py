"""The HTTP hot path against fake Tritons on loopback ports: which answers are relayed, which
send the request to another node."""

import time

import aiohttp
import pytest
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from tests.gateway.fakes import (
    FakeScheduler,
    echo,
    first_failure_ejector,
    invalid,
    refusing_node,
    reset,
    slow,
    unavailable,
)
from tests.gateway.http.conftest import StartTriton
from tritonfleet.gateway.errors import DeadlineExceeded, Unavailable
from tritonfleet.gateway.http.forwarding import HttpForwarder, HttpServed
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import NodeRouting
from tritonfleet.protocol import NodeView

INFER = "/v2/models/simple/infer"


def forwarder(nodes: list[NodeView], session: aiohttp.ClientSession, max_attempts: int = 3) -> HttpForwarder:
    routing = NodeRouting(
        FakeScheduler(nodes), first_failure_ejector(), GatewayMetrics(CollectorRegistry()), max_attempts
    )
    return HttpForwarder(routing, session)


async def infer(route: HttpForwarder, body: bytes = b"{}", timeout_s: float = 10.0) -> HttpServed:
    headers = CIMultiDict({"Content-Type": "application/json"})
    return await route.forward("simple", None, "POST", INFER, body, headers, time.monotonic() + timeout_s)


async def test_the_bytes_reach_the_node_untouched_and_its_answer_comes_back(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    triton = await tritons(echo)
    route = forwarder([triton.node("a")], data_session)
    body = bytes(range(256)) * 100
    headers = CIMultiDict({"Content-Type": "application/octet-stream", "X-Request-ID": "r1"})
    served = await route.forward(
        "simple", None, "POST", INFER + "?binary=1", body, headers, time.monotonic() + 10
    )
    assert (served.node_id, served.attempts, served.reply.status) == ("a", 1, 200)
    assert served.reply.body == b"answer to " + body
    assert served.reply.headers["Content-Type"] == "application/octet-stream"
    [received] = triton.received
    assert (received.method, received.path_qs, received.body) == ("POST", INFER + "?binary=1", body)
    assert received.headers["X-Request-ID"] == "r1"


async def test_a_refused_node_is_ejected_and_every_request_goes_to_the_live_one(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    live = await tritons(echo)
    route = forwarder([refusing_node("a-dead"), live.node("b-live")], data_session)
    answers = [await infer(route) for _ in range(3)]
    assert [served.node_id for served in answers] == ["b-live"] * 3
    assert [served.attempts for served in answers] == [2, 1, 1], "the dead node once, then never again"
    assert route.routing.ejector.ejected() == {"a-dead"}


async def test_a_node_that_resets_the_connection_is_left_for_another(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    resetting, live = await tritons(reset), await tritons(echo)
    route = forwarder([resetting.node("a"), live.node("b")], data_session)
    served = await infer(route, b"once")
    assert (served.node_id, served.reply.body) == ("b", b"answer to once")
    assert len(resetting.received) == 1


async def test_a_503_from_a_node_sends_the_request_to_another(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    starting, live = await tritons(unavailable), await tritons(echo)
    route = forwarder([starting.node("a"), live.node("b")], data_session)
    served = await infer(route)
    assert (served.node_id, served.attempts, served.reply.status) == ("b", 2, 200)
    assert len(starting.received) == 1


async def test_a_node_error_like_400_is_relayed_and_not_retried(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    refusing, live = await tritons(invalid), await tritons(echo)
    route = forwarder([refusing.node("a"), live.node("b")], data_session)
    served = await infer(route)
    assert (served.node_id, served.reply.status) == ("a", 400)
    assert served.reply.body == b'{"error":"expected 2 inputs but got 1"}'
    assert live.received == []
    assert route.routing.ejector.ejected() == frozenset(), "a node that answers is not failing"


async def test_a_node_that_does_not_answer_within_the_deadline_is_not_retried(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    stuck, live = await tritons(slow), await tritons(echo)
    route = forwarder([stuck.node("a"), live.node("b")], data_session)
    with pytest.raises(DeadlineExceeded, match="node a did not answer within the deadline"):
        await infer(route, timeout_s=0.1)
    assert (len(stuck.received), live.received) == (1, [])
    assert route.routing.scheduler.core.in_flight("a") == 0


async def test_with_every_node_failing_the_request_is_unavailable(
    tritons: StartTriton, data_session: aiohttp.ClientSession
) -> None:
    starting = await tritons(unavailable)
    route = forwarder([refusing_node("a"), starting.node("b")], data_session)
    with pytest.raises(Unavailable, match="no node could serve model 'simple' now; last failure: node b"):
        await infer(route)
