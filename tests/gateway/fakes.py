"""Small worlds for the gateway's tests: a scheduler and a node view the test sets, a gateway core
over them, and in-process HTTP servers that answer as a node's Triton does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry

from tests.fakes import FakeClock
from tests.scheduler.fakes import node
from tritonfleet.config import GatewayConfig, Policy
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import Ejector, NodeRouting
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.net import free_port, http_url
from tritonfleet.protocol import NodeView
from tritonfleet.scheduler.client import Pick, SchedulerClient
from tritonfleet.scheduler.core import Scheduler


class FakeScheduler(SchedulerClient):
    """The real round-robin core, without a watcher: the test sets the nodes."""

    def __init__(self, nodes: list[NodeView]) -> None:
        self.core = Scheduler(Policy.ROUND_ROBIN)
        self.core.update(nodes)

    async def pick(
        self,
        model: str,
        version: str | None = None,
        exclude: Collection[str] = (),
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> Pick:
        chosen = self.core.choose(model, version, exclude, affinity, pinned)
        return Pick(chosen.node_id, chosen.triton_http_url)

    def acquire(self, node_id: str) -> None:
        self.core.acquire(node_id)

    def release(self, node_id: str) -> None:
        self.core.release(node_id)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FakeWatcher(NodeWatcher):
    """A node view the test sets; it follows no health checker (never started, no client)."""

    def __init__(self, nodes: Sequence[NodeView] = ()) -> None:
        super().__init__([], client=None, token=CLUSTER_TOKEN)  # type: ignore[arg-type]
        self.view = list(nodes)

    @property
    def nodes(self) -> list[NodeView]:
        return list(self.view)


CLUSTER_TOKEN = "test-cluster-token"


def first_failure_ejector() -> Ejector:
    """Ejects a node at its first failure, for as long as the test runs (the clock stands still)."""
    return Ejector(after_failures=1, base_s=10.0, max_s=60.0, clock=FakeClock())


def gateway_core(nodes: list[NodeView], session: aiohttp.ClientSession, **config: Any) -> GatewayCore:
    """A core as `open_core` builds it, unpaid, over a FakeScheduler and a FakeWatcher."""
    gw = GatewayConfig(**config)
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    routing = NodeRouting.configured(FakeScheduler(nodes), first_failure_ejector(), metrics, gw)
    return GatewayCore(
        gw, FakeWatcher(nodes), routing, metrics, registry, session, paid=None, cluster_token=CLUSTER_TOKEN
    )


@dataclass(frozen=True)
class Received:
    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes


Behaviour = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass
class FakeTriton:
    """One node's Triton HTTP endpoint, in process: its base URL and what it was sent."""

    url: str
    received: list[Received] = field(default_factory=list)

    def node(self, node_id: str, *models: str) -> NodeView:
        """A healthy, ready node whose Triton is this one, serving `models` ("simple" if none)."""
        return node(node_id, *(models or ("simple",))).model_copy(update={"triton_http_url": self.url})


def refusing_node(node_id: str, *models: str) -> NodeView:
    """A node whose Triton address has nothing listening: every connection is refused."""
    url = http_url("127.0.0.1", free_port())
    return node(node_id, *(models or ("simple",))).model_copy(update={"triton_http_url": url})


async def echo(request: web.Request, body: bytes) -> web.Response:
    return web.Response(body=b"answer to " + body, headers={"Content-Type": "application/octet-stream"})


async def unavailable(request: web.Request, body: bytes) -> web.Response:
    return web.Response(status=503, text='{"error":"Server not ready"}', content_type="application/json")


async def invalid(request: web.Request, body: bytes) -> web.Response:
    return web.Response(
        status=400, text='{"error":"expected 2 inputs but got 1"}', content_type="application/json"
    )


async def reset(request: web.Request, body: bytes) -> web.Response:
    """Closes the connection without an answer, as a Triton killed mid-request does."""
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(60)  # cancelled: the connection is gone
    raise AssertionError("unreachable")


async def slow(request: web.Request, body: bytes) -> web.Response:
    """Never answers in a test's time; cancelled when the gateway gives up and disconnects."""
    await asyncio.sleep(60)
    raise AssertionError("the gateway should have given up")
