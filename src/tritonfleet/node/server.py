"""The manager's HTTP server: `/ping`, `/healthz`, `/metrics`, and `/v2/...` in forwarding mode."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tritonfleet.metrics import render
from tritonfleet.node.forward import Forwarder
from tritonfleet.node.metrics import NodeMetrics


def build_app(
    ping: Callable[[], dict[str, Any]], forwarder: Forwarder, metrics: NodeMetrics, max_body_bytes: int
) -> web.Application:
    async def ping_route(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **ping()})

    async def healthz_route(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics_route(request: web.Request) -> web.Response:
        body, content_type = render(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_get("/ping", ping_route)
    app.router.add_get("/healthz", healthz_route)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_route("GET", "/v2{tail:.*}", forwarder.handle)
    app.router.add_route("POST", "/v2{tail:.*}", forwarder.handle)
    return app


class HttpServer:
    """Serves an aiohttp app on a socket bound at once, so that the port is known before serving."""

    def __init__(self, app: web.Application, host: str, port: int, shutdown_timeout_s: float) -> None:
        self.runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout_s
        )
        self.sock = socket.create_server((host, port))
        self.port: int = self.sock.getsockname()[1]
        self._started = False

    async def start(self) -> None:
        await self.runner.setup()
        self._started = True
        await web.SockSite(self.runner, self.sock).start()

    async def aclose(self) -> None:
        """Stop accepting, let handlers finish up to shutdown_timeout_s, cancel the stragglers."""
        if self._started:
            await self.runner.cleanup()
        self.sock.close()
