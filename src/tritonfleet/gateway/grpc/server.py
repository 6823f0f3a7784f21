"""The gateway's gRPC server: grpc.aio on the gateway's event loop, beside its HTTP app, over
the same core (scheduler, ejector, metrics, node view, paid path)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from tritonfleet.config import GatewayConfig
from tritonfleet.gateway.errors import GrpcBindError
from tritonfleet.gateway.grpc.channels import NodeChannels, channel_options
from tritonfleet.gateway.grpc.forwarding import GrpcForwarder
from tritonfleet.gateway.grpc.routes import GrpcRoutes
from tritonfleet.gateway.service import GatewayCore

log = logging.getLogger(__name__)


def server_options(config: GatewayConfig) -> list[tuple[str, Any]]:
    return [
        # Larger messages are refused by gRPC itself with RESOURCE_EXHAUSTED, from the length
        # prefix, before the gateway buffers them.
        ("grpc.max_receive_message_length", config.grpc_max_message_bytes),
        ("grpc.max_send_message_length", config.grpc_max_message_bytes),
        # gRPC shares a port between processes by default: a second gateway (or a test
        # cluster beside `make up`) would silently take half of the first one's clients.
        ("grpc.so_reuseport", 0),
    ]


def server_credentials(config: GatewayConfig) -> grpc.ServerCredentials | None:
    """TLS with gateway.tls_cert_file and tls_key_file; None when they are unset."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    pair = (config.tls_key_file.read_bytes(), config.tls_cert_file.read_bytes())
    return grpc.ssl_server_credentials([pair])


class GrpcServer:
    """Starts and stops the gRPC server and the channels it relays over; with `credentials`,
    over TLS."""

    def __init__(self, core: GatewayCore, credentials: grpc.ServerCredentials | None = None) -> None:
        self.config = config = core.config
        self.credentials = credentials
        options = channel_options(config.grpc_max_message_bytes, config.connect_timeout_s)
        self.channels = NodeChannels(options, close_grace_s=config.request_timeout_s)
        self.channels.update(core.watcher.nodes)
        core.watcher.subscribe(self.channels.update)
        forwarder = GrpcForwarder(core.routing, self.channels, config.connect_timeout_s)
        self.routes = GrpcRoutes(core, forwarder, self.channels)
        self.server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    async def start(self) -> None:
        server = grpc.aio.server(options=server_options(self.config))
        server.add_generic_rpc_handlers((self.routes.handler(),))
        try:
            if self.credentials is None:
                server.add_insecure_port(self.address)
            else:
                server.add_secure_port(self.address, self.credentials)
        except RuntimeError as exc:
            raise GrpcBindError(
                f"cannot listen for gRPC on {self.address} (gateway.grpc_port): {exc}"
            ) from exc
        await server.start()
        self.server = server
        log.info("gateway gRPC ready", extra={"address": self.address})

    def begin_stop(self, grace_s: float) -> None:
        """Stop accepting calls; those in flight have `grace_s` to finish, then are cancelled."""
        if self.server is not None and self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self.server.stop(grace_s))

    async def aclose(self, grace_s: float) -> None:
        self.begin_stop(grace_s)
        if self._stopping is not None:
            await self._stopping
        await self.channels.aclose()
