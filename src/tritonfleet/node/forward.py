"""Forwarding mode: the manager relays Triton's inference and metadata routes, counting what is
in flight; nothing else of Triton's (repository control, shared memory, trace, logging) is
reachable through it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web

from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.proxy import UpstreamError, UpstreamTimeout, end_to_end, exchange

log = logging.getLogger(__name__)

# Server metadata, health, and per model: metadata, readiness, configuration, statistics and
# inference (`infer`, and the generate extension).
FORWARDED = re.compile(
    r"/v2(/health/(live|ready)|/models/stats"
    r"|/models/[^/]+(/versions/[^/]+)?(/(ready|config|stats|infer|generate|generate_stream))?)?"
)


class InFlight:
    """Requests being forwarded now; drain waits until there are none."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.count = 0
        self.metrics = metrics
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        self._move(+1)
        try:
            yield
        finally:
            self._move(-1)

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when none is left within timeout_s."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _move(self, delta: int) -> None:
        self.count += delta
        self.metrics.in_flight.set(self.count)
        if self.count:
            self._idle.clear()
        else:
            self._idle.set()


class TritonRelay:
    """Relays one request to Triton with tritonfleet.proxy: body and headers unchanged.

    `target` gives Triton's HTTP URL, or None while Triton is not ready. Both that and an
    unreachable Triton answer 503, which a gateway retries on another node; a Triton that does
    not answer in time, 504.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: Callable[[], str | None],
        in_flight: InFlight,
        metrics: NodeMetrics,
        timeout_s: float,
    ) -> None:
        self.session = session
        self.target = target
        self.in_flight = in_flight
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Both the decoded and the raw path: an escaped "/" must not smuggle another route in.
        if not (FORWARDED.fullmatch(request.path) and FORWARDED.fullmatch(request.rel_url.raw_path)):
            return error(403, f"{request.path} is not forwarded: nodes serve only inference and metadata")
        started = time.monotonic()
        request_id = request.headers.get("X-Request-ID", "")
        with self.in_flight.track():
            response = await self._relay(request, request_id)
        kind = "infer" if request.path.endswith("/infer") else "other"
        self.metrics.forwarded.observe(kind, response.status, time.monotonic() - started)
        log.debug(
            "forwarded",
            extra={"request_id": request_id, "path": request.path, "status": response.status},
        )
        return response

    async def _relay(self, request: web.Request, request_id: str) -> web.Response:
        base = self.target()
        if base is None:
            return error(503, "Triton on this node is not ready")
        try:
            # A client trickling its body holds the manager no longer than Triton may take.
            async with asyncio.timeout(self.timeout_s):
                body = await request.read()
        except TimeoutError:
            return error(408, f"request body not received within {self.timeout_s:g} s")
        try:
            reply = await exchange(
                self.session,
                request.method,
                base + request.raw_path,
                body,
                end_to_end(request.headers),
                self.timeout_s,
            )
        except UpstreamError as exc:
            log.warning("forwarding failed", extra={"request_id": request_id, "error": str(exc)})
            return error(504 if isinstance(exc, UpstreamTimeout) else 503, str(exc))
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


def error(status: int, message: str) -> web.Response:
    """Triton's error shape."""
    return web.json_response({"error": message}, status=status)
