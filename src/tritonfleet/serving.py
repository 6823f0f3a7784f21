"""What the control-plane services (FastAPI under uvicorn) share: the server, the schema, metrics."""

from __future__ import annotations

import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tritonfleet.metrics import HttpMetrics


class ControlPlaneApp(FastAPI):
    """A FastAPI app whose OpenAPI schema leaves out the 422 answers it never gives: invalid
    input is answered 400 in Triton's `{"error": ...}` shape by each service's handlers."""

    def openapi(self) -> dict[str, Any]:
        fresh = self.openapi_schema is None
        schema = super().openapi()
        if fresh:  # super() caches the schema, so it is trimmed once
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500  # what the client sees if the app dies before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(_route(scope), status, time.perf_counter() - started_s)


def _route(scope: Scope) -> str:
    # The router writes the matched route into the scope; unmatched paths share one label so
    # that scanners cannot blow up the label cardinality.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


def serve_asgi(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, drains and runs the lifespan exit."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # Control-plane requests are short; a held watch must not delay a stop by its whole timeout.
        timeout_graceful_shutdown=1,
    )
