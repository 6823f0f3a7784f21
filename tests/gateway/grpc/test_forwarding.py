import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client import CollectorRegistry

from tests.fakes import FakeClock
from tests.gateway.fakes import FakeScheduler
from tests.scheduler.fakes import node
from tritonfleet.gateway.errors import Unavailable
from tritonfleet.gateway.grpc.channels import SERVICE, NodeChannels, channel_options
from tritonfleet.gateway.grpc.forwarding import GrpcForwarder
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import Ejector, NodeRouting
from tritonfleet.net import free_port
from tritonfleet.protocol import NodeView


@dataclass
class FakeNode:
    """An in-process gRPC server standing in for a Triton node's ModelInfer."""

    port: int
    received: list[bytes] = field(default_factory=list)


Behaviour = Callable[[list[bytes], bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
StartServer = Callable[[Behaviour], Awaitable[FakeNode]]


async def echo(received: list[bytes], message: bytes, context: grpc.aio.ServicerContext) -> bytes:
    received.append(message)
    return b"answer to " + message


async def timed(received: list[bytes], message: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Answers with the time the call had left when it arrived."""
    received.append(message)
    return str(context.time_remaining()).encode()


async def invalid(received: list[bytes], message: bytes, context: grpc.aio.ServicerContext) -> bytes:
    received.append(message)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected 2 inputs")
    return b""


@pytest.fixture
async def servers() -> AsyncIterator[StartServer]:
    started: list[grpc.aio.Server] = []

    async def start(behaviour: Behaviour) -> FakeNode:
        server = grpc.aio.server()
        fake = FakeNode(0)

        async def model_infer(message: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await behaviour(fake.received, message, context)

        handler = grpc.unary_unary_rpc_method_handler(model_infer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
        )
        fake.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        started.append(server)
        return fake

    yield start
    for server in started:
        await server.stop(None)


def grpc_node(node_id: str, port: int) -> NodeView:
    return node(node_id, "simple").model_copy(update={"triton_grpc_url": f"grpc://127.0.0.1:{port}"})


@pytest.fixture
async def channels() -> AsyncIterator[NodeChannels]:
    opened = NodeChannels(channel_options(1024 * 1024, connect_timeout_s=0.5), close_grace_s=0)
    yield opened
    await opened.aclose()


def forwarder(nodes: list[NodeView], channels: NodeChannels, ejector: Ejector) -> GrpcForwarder:
    channels.update(nodes)
    metrics = GatewayMetrics(CollectorRegistry())
    routing = NodeRouting(FakeScheduler(nodes), ejector, metrics, max_attempts=3)
    return GrpcForwarder(routing, channels, connect_timeout_s=0.5)


def soon() -> float:
    return time.monotonic() + 10


def ejector() -> Ejector:
    return Ejector(after_failures=1, base_s=10.0, max_s=60.0, clock=FakeClock())


async def test_the_bytes_reach_the_node_untouched_and_its_answer_comes_back(
    servers: StartServer, channels: NodeChannels
) -> None:
    alive = await servers(echo)
    route = forwarder([grpc_node("a", alive.port)], channels, ejector())
    message = bytes(range(256)) * 100
    served = await route.forward(
        "ModelInfer", "simple", None, message, (("x-request-id", "r1"),), deadline=soon()
    )
    assert (served.code, served.node_id, served.body) == (grpc.StatusCode.OK, "a", b"answer to " + message)
    assert alive.received == [message]


async def test_a_call_is_retried_on_another_node_when_the_first_is_unreachable(
    servers: StartServer, channels: NodeChannels
) -> None:
    alive = await servers(echo)
    ejecting = ejector()
    route = forwarder([grpc_node("dead", free_port()), grpc_node("live", alive.port)], channels, ejecting)
    answers = [await route.forward("ModelInfer", "simple", None, b"x", (), deadline=soon()) for _ in range(3)]
    assert [served.node_id for served in answers] == ["live"] * 3
    assert answers[0].attempts == 2, "the dead node first, then the live one"
    assert [served.attempts for served in answers[1:]] == [1, 1], "the dead node is ejected at once"
    assert ejecting.ejected() == {"dead"}


async def test_a_node_error_other_than_unavailable_is_relayed_and_not_retried(
    servers: StartServer, channels: NodeChannels
) -> None:
    refusing, alive = await servers(invalid), await servers(echo)
    route = forwarder([grpc_node("a", refusing.port), grpc_node("b", alive.port)], channels, ejector())
    served = await route.forward("ModelInfer", "simple", None, b"x", (), deadline=soon())
    assert (served.node_id, served.code, served.details) == (
        "a",
        grpc.StatusCode.INVALID_ARGUMENT,
        "expected 2 inputs",
    )
    assert alive.received == []


async def test_with_every_node_unreachable_the_call_is_unavailable(channels: NodeChannels) -> None:
    route = forwarder([grpc_node("a", free_port()), grpc_node("b", free_port())], channels, ejector())
    with pytest.raises(Unavailable, match="no node could serve model 'simple'"):
        await route.forward("ModelInfer", "simple", None, b"x", (), deadline=soon())


async def test_a_stream_is_pinned_to_a_node_it_could_connect_to(
    servers: StartServer, channels: NodeChannels
) -> None:
    alive = await servers(echo)
    ejecting = ejector()
    route = forwarder([grpc_node("dead", free_port()), grpc_node("live", alive.port)], channels, ejecting)
    pinned = await route.pin("simple", None, deadline=soon())
    assert pinned.node_id == "live" and ejecting.ejected() == {"dead"}


async def test_a_node_without_a_grpc_address_is_skipped(servers: StartServer, channels: NodeChannels) -> None:
    alive = await servers(echo)
    route = forwarder([node("http-only", "simple"), grpc_node("live", alive.port)], channels, ejector())
    answers = [await route.forward("ModelInfer", "simple", None, b"x", (), deadline=soon()) for _ in range(2)]
    assert {served.node_id for served in answers} == {"live"}


async def test_the_deadline_travels_to_the_node(servers: StartServer, channels: NodeChannels) -> None:
    node = await servers(timed)
    route = forwarder([grpc_node("a", node.port)], channels, ejector())
    served = await route.forward("ModelInfer", "simple", None, b"x", (), deadline=time.monotonic() + 2.0)
    # gRPC sends the timeout rounded up to its own units: a few ms of slack.
    assert 1.0 < float(served.body) <= 2.1
