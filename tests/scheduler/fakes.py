"""Small worlds for the scheduler's tests: node views, a fake health checker, a fake network."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tritonfleet.config import FleetConfig
from tritonfleet.net import http_url
from tritonfleet.protocol import ModelRef, NodeHealth, NodeList, NodeState, NodeView
from tritonfleet.scheduler.command import create_app


def node(
    node_id: str,
    *models: str,
    health: NodeHealth = NodeHealth.HEALTHY,
    state: NodeState = NodeState.READY,
    pending: int = 0,
    in_flight: int = 0,
    age_s: float = 0.0,
) -> NodeView:
    """A node serving `models`, each "name" (version 1) or "name:version"."""
    refs = [ModelRef(name=m.partition(":")[0], version=m.partition(":")[2] or "1") for m in models]
    return NodeView(
        node_id=node_id,
        manager_url=f"http://{node_id}-manager",
        triton_http_url=f"http://{node_id}-triton",
        models=refs,
        pending=pending,
        in_flight=in_flight,
        state=state,
        health=health,
        last_heartbeat_age_s=age_s,
    )


class FakeHealthChecker:
    """The read side of a health checker: `/v1/nodes` and its long-poll watch, over a set list."""

    def __init__(self, nodes: Sequence[NodeView] = ()) -> None:
        self.version = 1
        self.nodes = list(nodes)
        # As a checker started less than a TTL ago answers (NodeList.warming_s).
        self.warming_s = 0.0
        self._changed = asyncio.Event()
        self.app = FastAPI()
        self.app.get("/v1/nodes")(self.listing)
        self.app.get("/v1/nodes/watch")(self.watch)

    def set_nodes(self, nodes: Sequence[NodeView]) -> None:
        self.version += 1
        self.nodes = list(nodes)
        self._changed.set()
        self._changed = asyncio.Event()

    async def listing(self) -> NodeList:
        return NodeList(version=self.version, nodes=self.nodes, warming_s=self.warming_s)

    async def watch(self, since: int, timeout_s: float) -> NodeList:
        if self.version <= since:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
        return await self.listing()


class FakeNetwork(httpx.AsyncBaseTransport):
    """Routes requests by host name to in-process ASGI apps; a host in `down` refuses connections."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.transports = {host: httpx.ASGITransport(app) for host, app in apps.items()}
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.transports:
            raise httpx.ConnectError(f"connection refused by {host}", request=request)
        return await self.transports[host].handle_async_request(request)


TOKEN = "test-cluster-token"
CLUSTER_AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fleet_config(**sections: dict[str, Any]) -> FleetConfig:
    cluster = {"health_urls": ["http://checker"], "token": TOKEN}
    return FleetConfig.model_validate({"cluster": cluster, **sections})


@contextlib.asynccontextmanager
async def running_service(
    checker: FakeHealthChecker, config: FleetConfig | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The scheduler service app, its lifespan entered, with a client for it; waits for a view."""
    network = FakeNetwork({"checker": checker.app})
    async with httpx.AsyncClient(transport=network) as watcher_client:
        app = create_app(config or fleet_config(), watcher_client=watcher_client)
        async with app.router.lifespan_context(app):
            await app.state.watcher.wait_for(lambda nodes: len(nodes) == len(checker.nodes), 2.0)
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://scheduler", headers=CLUSTER_AUTH
            ) as client:
                yield app, client


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a real loopback port (its lifespan is the caller's), for clients that
    speak real HTTP; its base URL. The socket listens before uvicorn runs, so a client may
    connect at once: the kernel holds the connection until uvicorn accepts it."""
    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", ws="none"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield http_url("127.0.0.1", listening.getsockname()[1])
    finally:
        server.should_exit = True
        await serving
        listening.close()
