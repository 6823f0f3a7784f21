"""`tritonfleet gateway`: the core, its HTTP front served by aiohttp on uvloop, its gRPC front
beside it on the same event loop."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from functools import partial

import uvloop
from aiohttp import web

from tritonfleet.config import FleetConfig
from tritonfleet.gateway.grpc.server import GrpcServer
from tritonfleet.gateway.http.routes import build_app
from tritonfleet.gateway.service import open_core
from tritonfleet.lifecycle import close_on_exit
from tritonfleet.net import SERVER_IDLE_TIMEOUT_S

log = logging.getLogger(__name__)


async def create_app(config: FleetConfig) -> web.Application:
    """The gateway's HTTP app, with everything it owns started; the app's cleanup closes it all.

    A failure while starting closes what was started before it, and re-raises.
    """
    gw = config.gateway
    stack = AsyncExitStack()
    try:
        core = await open_core(config, stack)
        grpc_server = GrpcServer(core)
        close_on_exit(stack, "gRPC server", partial(grpc_server.aclose, gw.shutdown_grace_s))
        await grpc_server.start()
        app = build_app(core)
    except BaseException:
        await stack.aclose()
        raise

    async def stop_accepting(app: web.Application) -> None:
        # The gRPC side drains while aiohttp drains the HTTP side.
        grpc_server.begin_stop(gw.shutdown_grace_s)

    async def close(app: web.Application) -> None:
        await stack.aclose()

    app.on_shutdown.append(stop_accepting)
    app.on_cleanup.append(close)
    log.info(
        "gateway ready",
        extra={"url": f"http://{gw.host}:{gw.port}", "grpc": grpc_server.address, "scheduler": gw.scheduler},
    )
    return app


def serve(config: FleetConfig) -> int:
    web.run_app(
        create_app(config),
        host=config.gateway.host,
        port=config.gateway.port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=None,
        # Stop accepting, let requests in flight finish for this long, then cancel them.
        shutdown_timeout=config.gateway.shutdown_grace_s,
        keepalive_timeout=SERVER_IDLE_TIMEOUT_S,
    )
    return 0
