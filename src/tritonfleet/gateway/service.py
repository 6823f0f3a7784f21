"""What the gateway's two fronts share, built once at start-up: `GatewayCore`.

    open_core(config, stack)   control client, data-path session, node view (watcher),
                               scheduler, ejector, routing, metrics, paid path
    http/                      the KServe v2 HTTP front, over the core
    grpc/                      the KServe v2 gRPC front, over the core

Everything is opened onto one AsyncExitStack: a part that fails to start closes those before it,
and closing the stack closes them all in reverse, each logged if it fails (`lifecycle`).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

import aiohttp
import httpx
from prometheus_client import CollectorRegistry

from tritonfleet.config import FleetConfig, GatewayConfig, SchedulerMode
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.paid import PaidPath, open_paid_path
from tritonfleet.gateway.routing import Ejector, NodeRouting
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.lifecycle import close_on_exit
from tritonfleet.protocol import NodeView
from tritonfleet.proxy import aclose_session, new_session
from tritonfleet.scheduler.client import EmbeddedScheduler, RemoteScheduler, SchedulerClient
from tritonfleet.triton_admin import admin_key

log = logging.getLogger(__name__)

# Control-plane calls (the watch) are few; the data path, the remote scheduler's pick included,
# has its own aiohttp session.
CONTROL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GatewayCore:
    config: GatewayConfig
    watcher: NodeWatcher
    routing: NodeRouting
    metrics: GatewayMetrics
    registry: CollectorRegistry
    # The data path's HTTP client: requests to nodes, fan-outs, the remote scheduler's picks.
    session: aiohttp.ClientSession
    paid: PaidPath | None
    # The admin credential of the client port's `/v1/nodes`; it also unlocks the nodes' Triton
    # repository index for the cluster-wide one (tritonfleet.triton_admin).
    cluster_token: str

    @property
    def admin_key(self) -> str:
        return admin_key(self.cluster_token)

    def schedulable(self) -> list[NodeView]:
        return [node for node in self.watcher.nodes if node.schedulable]

    def ready(self) -> bool:
        """Ready as a single Triton is: some healthy node serves some model."""
        return any(node.models for node in self.schedulable())


def latest_version(watcher: NodeWatcher, model: str) -> str | None:
    """The highest version of `model` that a schedulable node serves: the one Triton serves a
    request naming none, whose price such a request pays."""
    versions = [
        served.version
        for node in watcher.nodes
        if node.schedulable
        for served in node.models
        if served.name == model and served.version.isdigit()
    ]
    return max(versions, key=int, default=None)


async def open_core(config: FleetConfig, stack: AsyncExitStack) -> GatewayCore:
    gw = config.gateway
    token = config.cluster.read_token()
    control = httpx.AsyncClient(timeout=httpx.Timeout(CONTROL_TIMEOUT_S, read=None))
    close_on_exit(stack, "control-plane client", control.aclose)
    session = new_session(gw.connect_timeout_s)
    close_on_exit(stack, "data-path session", lambda: aclose_session(session))
    health = config.health
    scheduler: SchedulerClient
    if gw.scheduler is SchedulerMode.EMBEDDED:
        embedded = EmbeddedScheduler(
            config.cluster.health_urls,
            config.scheduler.policy,
            gw.node_route,
            control,
            watch_timeout_s=health.watch_timeout_s,
            stale_after_s=health.ttl_s,
            token=token,
        )
        scheduler, watcher = embedded, embedded.watcher
    else:
        # The remote scheduler has its own view; the gateway's answers (ready, index, statistics)
        # and its ejector follow this one.
        watcher = NodeWatcher(
            config.cluster.health_urls,
            control,
            watch_timeout_s=health.watch_timeout_s,
            token=token,
            stale_after_s=health.ttl_s,
        )
        await watcher.start()
        close_on_exit(stack, "node watcher", watcher.aclose)
        scheduler = RemoteScheduler(gw.scheduler_url, gw.node_route, session, token)
    await scheduler.start()
    close_on_exit(stack, "scheduler client", scheduler.aclose)
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    metrics.stale_view.set_function(lambda: float(watcher.stale))
    ejector = Ejector(gw.eject_after_failures, gw.eject_base_s, gw.eject_max_s)
    watcher.subscribe(
        lambda nodes: ejector.track(
            {node.node_id: f"{node.manager_url} {node.triton_http_url}" for node in nodes if node.schedulable}
        )
    )
    routing = NodeRouting.configured(scheduler, ejector, metrics, gw)
    if routing.outliers is not None:
        outliers = routing.outliers
        watcher.subscribe(lambda nodes: outliers.forget({node.node_id for node in nodes}))
    routing.stateful.follow(watcher.nodes)
    watcher.subscribe(routing.stateful.follow)
    paid = (
        await open_paid_path(config, stack, partial(latest_version, watcher))
        if config.payments.enabled
        else None
    )
    return GatewayCore(gw, watcher, routing, metrics, registry, session, paid, token)
