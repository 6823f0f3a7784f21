"""Small stand-ins shared by the health checker's tests: a clock, heartbeats, managers, a prober,
an app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.fakes import FakeClock
from tritonfleet.config import FleetConfig
from tritonfleet.health.command import create_app
from tritonfleet.health.prober import Prober
from tritonfleet.health.records import ProbeTarget
from tritonfleet.health.registry import Registry
from tritonfleet.protocol import Heartbeat

TOKEN = "cluster-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeProber(Prober):
    """Answers every probe with `self.healthy` instead of asking the network."""

    def __init__(self, healthy: bool = True) -> None:
        super().__init__(timeout_s=1.0)
        self.healthy = healthy
        self.probed: list[str] = []

    async def probe(self, target: ProbeTarget) -> bool:
        self.probed.append(target.node_id)
        return self.healthy


def beat(node_id: str = "n1", **fields: Any) -> Heartbeat:
    body = beat_json(node_id, **fields)
    return Heartbeat.model_validate(body)


def beat_json(node_id: str = "n1", **fields: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "manager_url": f"http://{node_id}.mgr:9000",
        "triton_http_url": f"http://{node_id}.triton:8000",
        "models": [{"name": "digits", "version": "1"}],
        "state": "ready",
        **fields,
    }


class Managers:
    """Feed a registry as the nodes' managers do: a node's first heartbeat registers it, the later
    ones present the secret that registration answered."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.secrets: dict[str, str] = {}

    def __call__(self, heartbeat: Heartbeat) -> None:
        secret = self.secrets.get(heartbeat.node_id)
        if secret is None:
            self.secrets[heartbeat.node_id] = self.registry.register(heartbeat, None)
        else:
            self.registry.heartbeat(heartbeat, secret)


def fleet_config(**health: Any) -> FleetConfig:
    return FleetConfig.model_validate({"cluster": {"token": TOKEN}, "health": health})


@dataclass
class Harness:
    client: httpx.AsyncClient  # sends the cluster token
    anonymous: httpx.AsyncClient  # sends none
    clock: FakeClock
    prober: FakeProber


async def register(client: httpx.AsyncClient, node_id: str = "n1", **fields: Any) -> str:
    """Register a node with the cluster token; its secret."""
    answer = await client.post("/v1/nodes/register", json=beat_json(node_id, **fields), headers=AUTH)
    assert answer.status_code == 200, answer.text
    secret = answer.json()["node_secret"]
    assert isinstance(secret, str)
    return secret


def owner(secret: str) -> dict[str, str]:
    """The headers of a node's own call: the cluster token and the node's secret."""
    return {**AUTH, "X-Node-Secret": secret}


@asynccontextmanager
async def running(**health: Any) -> AsyncIterator[Harness]:
    """An app with its lifespan (probes, expiry) running, reached in-process."""
    clock, prober = FakeClock(), FakeProber()
    app = create_app(fleet_config(**health), clock=clock, prober=prober)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5555))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://health", headers=AUTH) as client,
            httpx.AsyncClient(transport=transport, base_url="http://health") as anonymous,
        ):
            yield Harness(client, anonymous, clock, prober)
