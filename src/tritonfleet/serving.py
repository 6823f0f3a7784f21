"""What the control-plane services (FastAPI under uvicorn) share: the server, the schema, metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException
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


class BodyLimit:
    """Refuses a request body over `max_body_bytes` with 413 `{"error": ...}`: at once when its
    Content-Length says so, before anything is read, else as soon as a streamed body passes it.
    So no client, authenticated or not, can make a service hold more than that in memory."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                # Raised in the route's read of its body; FastAPI passes an HTTPException on to
                # the service's handlers, which answer it in the service's error shape.
                raise HTTPException(413, self._message())
            return message

        return counted

    def _message(self) -> str:
        return f"the request is too large: at most {self.max_body_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self._message()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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
