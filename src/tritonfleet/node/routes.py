"""The manager's HTTP routes: `/ping`, `/healthz`, `/metrics`, and `/v2/...` in forwarding mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tritonfleet.metrics import render
from tritonfleet.node.forward import TritonRelay
from tritonfleet.node.metrics import NodeMetrics


def build_app(
    ping: Callable[[], dict[str, Any]], relay: TritonRelay, metrics: NodeMetrics, max_body_bytes: int
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
    app.router.add_route("GET", "/v2{tail:.*}", relay.handle)
    app.router.add_route("POST", "/v2{tail:.*}", relay.handle)
    return app
