"""Fixtures of the HTTP front's tests: fake Tritons on loopback ports, the data-path session, and
the gateway's app over them; each is closed at teardown."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.gateway.fakes import Behaviour, FakeTriton, Received, gateway_core
from tritonfleet.gateway.http.routes import build_app
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.protocol import NodeView
from tritonfleet.proxy import aclose_session, new_session

StartTriton = Callable[[Behaviour], Awaitable[FakeTriton]]
StartGateway = Callable[..., Awaitable[tuple[TestClient[web.Request, web.Application], GatewayCore]]]


@pytest.fixture
async def tritons() -> AsyncIterator[StartTriton]:
    started: list[TestServer] = []

    async def start(behaviour: Behaviour) -> FakeTriton:
        fake = FakeTriton("")

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            fake.received.append(Received(request.method, request.path_qs, request.headers, body))
            return await behaviour(request, body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        started.append(server)
        fake.url = str(server.make_url("")).rstrip("/")
        return fake

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def data_session() -> AsyncIterator[aiohttp.ClientSession]:
    session = new_session(connect_timeout_s=0.5)
    yield session
    await aclose_session(session)


@pytest.fixture
async def gateway(data_session: aiohttp.ClientSession) -> AsyncIterator[StartGateway]:
    """`await gateway(nodes, **gateway_config)`: a client of the gateway's app, and its core."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        nodes: list[NodeView], **config: Any
    ) -> tuple[TestClient[web.Request, web.Application], GatewayCore]:
        core = gateway_core(nodes, data_session, **config)
        client = TestClient(TestServer(build_app(core), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, core

    yield start
    for client in clients:
        await client.close()
