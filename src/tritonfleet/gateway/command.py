"""`tritonfleet gateway`: the core, its HTTP front served by aiohttp on uvloop, its gRPC front
beside it on the same event loop; with the Envoy data plane, Envoy on the gateway's ports in
front of both, which then listen on loopback ports of their own."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import ssl
from contextlib import AsyncExitStack
from functools import partial

import uvloop
from aiohttp import web

from tritonfleet.config import ConfigError, DataPlane, FleetConfig, GatewayConfig
from tritonfleet.gateway import access_log
from tritonfleet.gateway.envoy.control import EnvoyControl
from tritonfleet.gateway.envoy.resources import Authorizing, Ports
from tritonfleet.gateway.grpc.server import GrpcServer, server_credentials
from tritonfleet.gateway.http.authorizer import Authorizer
from tritonfleet.gateway.http.routes import build_app
from tritonfleet.gateway.paid import PaidPath
from tritonfleet.gateway.service import open_core
from tritonfleet.lifecycle import close_on_exit
from tritonfleet.net import SERVER_IDLE_TIMEOUT_S, free_port

log = logging.getLogger(__name__)


async def create_app(config: FleetConfig, front: Ports | None = None) -> web.Application:
    """The gateway's HTTP app, with everything it owns started; the app's cleanup closes it all.
    With `front`, Envoy listens there, in front of this app and the gRPC server, and serves
    TLS if any: these two, behind it on loopback, are plaintext.

    A failure while starting closes what was started before it, and re-raises.
    """
    gw = config.gateway
    stack = AsyncExitStack()
    envoy: EnvoyControl | None = None
    try:
        core = await open_core(config, stack)
        grpc_server = GrpcServer(core, server_credentials(gw) if front is None else None)
        close_on_exit(stack, "gRPC server", partial(grpc_server.aclose, gw.shutdown_grace_s))
        await grpc_server.start()
        if front is not None:
            paid = None if core.paid is None else await serve_authorizer(config, core.paid, stack)
            envoy = EnvoyControl(config, front, core.watcher, core.metrics, paid)
            close_on_exit(stack, "envoy", partial(envoy.aclose, 0.0))
        app = build_app(core, None if envoy is None else envoy.status)
        if envoy is not None:
            await envoy.start()
            drain_envoy_first(envoy, gw.shutdown_grace_s)
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
    scheme = "http" if grpc_server.credentials is None else "https"
    log.info(
        "gateway ready",
        extra={
            "url": f"{scheme}://{gw.host}:{gw.port}",
            "grpc": grpc_server.address,
            "scheduler": gw.scheduler,
        },
    )
    return app


async def serve_authorizer(config: FleetConfig, paid: PaidPath, stack: AsyncExitStack) -> Authorizing:
    """The paid fast path's authorizer, on a loopback port of its own; closed after Envoy."""
    gw = config.gateway
    secret = secrets.token_urlsafe(32)
    # A commit may wait for the node's answer and then for the charge.
    hold_s = gw.request_timeout_s + config.payments.charge_timeout_s
    authorizer = Authorizer(paid, secret, gw.retry_after_s, hold_s + 5.0)
    runner = web.AppRunner(authorizer.app(), access_log=None)
    await runner.setup()
    close_on_exit(stack, "authorizer", runner.cleanup)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Authorizing(port, secret, timeout_s=config.payments.charge_timeout_s + 1.0)


def drain_envoy_first(envoy: EnvoyControl, grace_s: float) -> None:
    """On SIGTERM or SIGINT, Envoy drains before the Python gateway stops listening: what Envoy
    has in flight may still need a connection to it. Then the gateway stops as aiohttp does."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        raise web.GracefulExit  # out of the loop, as aiohttp's own handler does

    def drain() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        draining = loop.create_task(envoy.aclose(grace_s))
        draining.add_done_callback(lambda _: loop.call_soon(stop))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, drain)


def serve(config: FleetConfig) -> int:
    # Before anything serves: a file that can't be opened stops the gateway here.
    access_log.setup(config.gateway)
    front = None
    if config.gateway.data_plane is DataPlane.ENVOY:
        config, front = behind_envoy(config)
    # Behind Envoy, which serves TLS, on loopback: plaintext, as in create_app.
    ssl_context = http_tls(config.gateway) if front is None else None
    web.run_app(
        create_app(config, front),
        host=config.gateway.host,
        port=config.gateway.port,
        ssl_context=ssl_context,
        # With Envoy, drain_envoy_first handles the signals.
        handle_signals=front is None,
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=None,
        # Stop accepting, let requests in flight finish for this long, then cancel them.
        shutdown_timeout=config.gateway.shutdown_grace_s,
        keepalive_timeout=SERVER_IDLE_TIMEOUT_S,
    )
    return 0


def http_tls(gw: GatewayConfig) -> ssl.SSLContext | None:
    """TLS for the HTTP port with gateway.tls_cert_file and tls_key_file; None when unset."""
    if gw.tls_cert_file is None or gw.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2 at least
    # aiohttp speaks HTTP/1.1 only.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(gw.tls_cert_file, gw.tls_key_file)
    except OSError as exc:  # ssl.SSLError too: not PEM, or a key that is not the certificate's
        raise ConfigError(
            f"gateway.tls_cert_file {gw.tls_cert_file}, tls_key_file {gw.tls_key_file}: {exc}"
        ) from exc
    return context


def behind_envoy(config: FleetConfig) -> tuple[FleetConfig, Ports]:
    """The configuration of the Python gateway behind Envoy (its fronts on loopback ports), and
    the ports of Envoy's front door (the configured ones). It keeps the TLS keys, for Envoy."""
    gw = config.gateway
    inner = gw.model_copy(update={"host": "127.0.0.1", "port": free_port(), "grpc_port": free_port()})
    ports = Ports(gw.host, gw.port, gw.grpc_port, inner.port, inner.grpc_port)
    return config.model_copy(update={"gateway": inner}), ports
