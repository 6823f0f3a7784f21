"""`tritonfleet gateway`: builds the gateway from config and serves it with aiohttp on uvloop."""

from __future__ import annotations

import logging

import httpx
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from tritonfleet.config import FleetConfig, SchedulerMode
from tritonfleet.gateway.app import Gateway
from tritonfleet.gateway.ejection import Ejector
from tritonfleet.gateway.forwarding import Forwarder
from tritonfleet.gateway.grpc_server import GrpcEndpoint
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.payments import PaidPath
from tritonfleet.payments.chain import connect
from tritonfleet.payments.database import default_ledger_url
from tritonfleet.payments.ledger import Ledger
from tritonfleet.proxy import aclose_session, new_session
from tritonfleet.scheduler.client import EmbeddedScheduler, RemoteScheduler, SchedulerClient
from tritonfleet.scheduler.watch import NodeWatcher

log = logging.getLogger(__name__)

# Control-plane calls (the watch) are few; the data path, the remote scheduler's pick included,
# has its own aiohttp session.
CONTROL_TIMEOUT_S = 5.0
# On shutdown, how long requests and streams in flight may take to finish before they are cancelled.
SHUTDOWN_GRACE_S = 10.0


async def create_app(config: FleetConfig) -> web.Application:
    """The gateway application, with everything it owns started; app cleanup stops it all."""
    gw = config.gateway
    control = httpx.AsyncClient(timeout=httpx.Timeout(CONTROL_TIMEOUT_S, read=None))
    session = new_session(gw.connect_timeout_s)
    scheduler: SchedulerClient
    if gw.scheduler is SchedulerMode.EMBEDDED:
        embedded = EmbeddedScheduler(
            config.cluster.health_urls, config.scheduler.policy, gw.node_route, control
        )
        scheduler, watcher = embedded, embedded.watcher
    else:
        scheduler = RemoteScheduler(gw.scheduler_url, gw.node_route, session)
        watcher = NodeWatcher(
            config.cluster.health_urls,
            control,
            watch_timeout_s=config.health.watch_timeout_s,
            stale_after_s=config.health.ttl_s,
        )
        await watcher.start()
    await scheduler.start()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    ejector = Ejector(gw.eject_after_failures, gw.eject_base_s, gw.eject_max_s)
    watcher.subscribe(
        lambda nodes: ejector.track(
            {node.node_id: f"{node.manager_url} {node.triton_http_url}" for node in nodes if node.schedulable}
        )
    )
    forwarder = Forwarder(scheduler, session, ejector, metrics, gw.max_attempts)
    paid = await start_paid_path(config) if config.payments.enabled else None
    grpc_endpoint = GrpcEndpoint(gw, scheduler, watcher, ejector, metrics, paid)
    await grpc_endpoint.start()
    app = web.Application(client_max_size=gw.max_body_bytes)
    app.router.add_routes(Gateway(gw, forwarder, watcher, session, registry, metrics, paid).routes())

    async def stop_accepting(app: web.Application) -> None:
        # The gRPC side drains while aiohttp drains the HTTP side.
        grpc_endpoint.begin_stop(SHUTDOWN_GRACE_S)

    async def close(app: web.Application) -> None:
        await grpc_endpoint.aclose(SHUTDOWN_GRACE_S)
        if paid is not None:
            await paid.aclose()
            paid.ledger.close()
        await scheduler.aclose()
        if gw.scheduler is SchedulerMode.REMOTE:
            await watcher.aclose()
        await aclose_session(session)
        await control.aclose()

    app.on_shutdown.append(stop_accepting)
    app.on_cleanup.append(close)
    log.info(
        "gateway ready",
        extra={
            "url": f"http://{gw.host}:{gw.port}",
            "grpc": grpc_endpoint.address,
            "scheduler": gw.scheduler,
        },
    )
    return app


async def start_paid_path(config: FleetConfig) -> PaidPath:
    ledger_url = default_ledger_url(config)
    ledger = Ledger.open(ledger_url)
    chain = connect(config, signing=False)
    hint = (
        f"Deposit credit into the PaymentVault at {chain.deployment.vault} on chain {config.chain.chain_id}"
    )
    if config.chain.dev:
        hint += f", or on this development chain: POST {token_manager_url(config)}/v1/faucet"
    paid = PaidPath(config.payments, ledger_url, ledger, chain, hint + ".")
    await paid.start()
    return paid


def token_manager_url(config: FleetConfig) -> str:
    return f"http://{config.payments.host}:{config.payments.port}"


def serve(config: FleetConfig) -> int:
    web.run_app(
        create_app(config),
        host=config.gateway.host,
        port=config.gateway.port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=None,
        # Stop accepting, let requests in flight finish for this long, then cancel them.
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    return 0
