"""What the control-plane services (FastAPI under uvicorn) share: the server, the schema, metrics,
and the bounds on what one client can hold: body size, time to send headers and body, and the
connections served at once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tritonfleet.config import ServedSection
from tritonfleet.metrics import HttpMetrics
from tritonfleet.net import HEADER_TIMEOUT_S


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
    Content-Length says so, before anything is read, else as soon as a streamed body passes it;
    and one not received whole within `body_timeout_s` with 408. So no client, authenticated or
    not, can make a service hold more than that in memory, or hold it for longer."""

    def __init__(self, app: ASGIApp, served: ServedSection) -> None:
        self.app = app
        self.max_body_bytes = served.max_body_bytes
        self.timeout_s = served.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0
        deadline: float | None = None
        whole = False

        async def bounded() -> Message:
            # Raised in the route's read of its body; FastAPI passes an HTTPException on to the
            # service's handlers, which answer it in the service's error shape.
            nonlocal seen, deadline, whole
            if whole:  # later calls wait for the disconnect, which may take as long as it takes
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            seen += len(message.get("body", b""))
            whole = not message.get("more_body", False)
            if seen > self.max_body_bytes:
                raise HTTPException(413, self._message())
            return message

        return bounded

    def _message(self) -> str:
        return f"the request is too large: at most {self.max_body_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self._message()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers are not complete within
    HEADER_TIMEOUT_S of its opening or of its previous answer. uvicorn has no such timeout: its
    keep-alive timer stops at the first byte, so a client trickling a header byte at a time
    would hold the connection for ever."""

    header_timeout_s = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # The keep-alive timeout covers the idle time before the next request begins.
            self._arm(self.timeout_keep_alive + self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(delay_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()


def serve_asgi(app: FastAPI, served: ServedSection) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, drains and runs the lifespan exit.
    Beyond `max_connections` open at once, new requests are answered 503."""
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": served.header_timeout_s})
    uvicorn.run(
        app,
        host=served.host,
        port=served.port,
        loop="uvloop",
        http=protocol,
        limit_concurrency=served.max_connections,
        log_config=None,
        access_log=False,
        # Control-plane requests are short; a held watch must not delay a stop by its whole timeout.
        timeout_graceful_shutdown=1,
    )
