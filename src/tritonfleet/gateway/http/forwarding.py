"""The HTTP hot path: one request's bytes to a node, its answer back, retried elsewhere by
`NodeRouting` when the node gives none."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from tritonfleet.gateway.errors import DeadlineExceeded
from tritonfleet.gateway.routing import NodeFailed, NodeRouting
from tritonfleet.gateway.sequences import from_http
from tritonfleet.proxy import Reply, UpstreamTimeout, UpstreamUnavailable, exchange
from tritonfleet.scheduler.client import Pick

log = logging.getLogger(__name__)

NODE_FAILURES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class HttpServed:
    reply: Reply
    node_id: str
    attempts: int


class HttpForwarder:
    """Sends a request to the node `routing` picks for its model and version; a node that
    refuses, resets or answers 502 to 504 is a failure, and the request goes to another one."""

    def __init__(self, routing: NodeRouting, session: aiohttp.ClientSession) -> None:
        self.routing = routing
        self.session = session

    async def forward(
        self,
        model: str,
        version: str | None,
        method: str,
        path_qs: str,
        body: bytes,
        headers: CIMultiDict[str],
        deadline: float,
        relay_idle_s: float | None = None,
    ) -> HttpServed:
        """`relay_idle_s`: a long or open-ended answer is relayed as it comes (proxy.exchange)."""

        async def send(pick: Pick, attempt: int, remaining_s: float) -> HttpServed:
            reply = await self._send(pick, method, path_qs, body, headers, remaining_s, relay_idle_s)
            return HttpServed(reply, pick.node_id, attempt)

        sequence = None
        # Only a stateful model's infer body is read (its sequence id); no other body ever is.
        if model in self.routing.stateful and method == "POST" and _is_infer(path_qs):
            sequence = from_http(model, headers, body)
        return await self.routing.attempt(model, version, deadline, send, sequence=sequence, discard=_discard)

    async def _send(
        self,
        pick: Pick,
        method: str,
        path_qs: str,
        body: bytes,
        headers: CIMultiDict[str],
        timeout_s: float,
        relay_idle_s: float | None,
    ) -> Reply:
        metrics = self.routing.metrics
        started = time.monotonic()
        try:
            reply = await exchange(
                self.session, method, pick.url + path_qs, body, headers, timeout_s, relay_idle_s
            )
        except UpstreamUnavailable as exc:
            log.warning("node unavailable", extra={"node": pick.node_id, "error": str(exc)})
            metrics.upstream.labels(pick.node_id, "unavailable").inc()
            raise NodeFailed("was unreachable") from exc
        except UpstreamTimeout as exc:
            metrics.upstream.labels(pick.node_id, "timeout").inc()
            raise DeadlineExceeded(f"node {pick.node_id} did not answer within the deadline") from exc
        metrics.upstream.labels(pick.node_id, str(reply.status)).inc()
        metrics.upstream_latency.labels(pick.node_id).observe(time.monotonic() - started)
        # 502 to 504: the node (or its manager, in forwarding mode) could not answer for its
        # Triton; another node may. Envoy's fast path retries and ejects on the same.
        if reply.status in NODE_FAILURES:
            raise NodeFailed(f"answered {reply.status}")
        return reply


def _discard(served: HttpServed) -> None:
    """Close the connection of a relayed answer that lost a hedge race, unread."""
    if served.reply.pending is not None:
        served.reply.pending.close()


def _is_infer(path_qs: str) -> bool:
    return path_qs.partition("?")[0].endswith("/infer")
