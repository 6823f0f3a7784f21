"""The hot path: send a request to a node chosen by the scheduler, retrying elsewhere on failure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from tritonfleet.gateway.ejection import Ejector
from tritonfleet.gateway.errors import DeadlineExceeded, Unavailable
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.proxy import Reply, UpstreamTimeout, UpstreamUnavailable, exchange
from tritonfleet.scheduler.client import Pick, SchedulerClient
from tritonfleet.scheduler.errors import NoNodeAvailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    reply: Reply
    node_id: str
    attempts: int


class NodeRouting:
    """What the HTTP and gRPC forwarders share: the scheduler's pick, steering clear of the
    nodes a request already tried and of ejected ones, and the ejection of a failing node."""

    def __init__(
        self, scheduler: SchedulerClient, ejector: Ejector, metrics: GatewayMetrics, max_attempts: int
    ) -> None:
        self.scheduler = scheduler
        self.ejector = ejector
        self.metrics = metrics
        self.max_attempts = max_attempts

    async def pick(self, model: str, version: str | None, tried: set[str]) -> Pick:
        try:
            return await self.scheduler.pick(model, version, tried | self.ejector.ejected())
        except NoNodeAvailable:
            # Every remaining node is ejected: better to try one than to fail outright.
            return await self.scheduler.pick(model, version, tried)

    def failed(self, node_id: str) -> None:
        if self.ejector.failed(node_id):
            self.metrics.ejections.labels(node_id).inc()
            log.warning("node ejected", extra={"node": node_id})


class Forwarder(NodeRouting):
    """Routes one request by model and version, and retries it on another node when the chosen
    one fails before answering (refused, reset, 503), as long as the deadline allows.

    Retrying after a reset can run an inference twice on two nodes; Triton's inference routes
    are stateless, and a reset answer was never seen by the client, so the retry is what the
    client would have done itself. A timeout is not retried: the deadline is spent.
    """

    def __init__(
        self,
        scheduler: SchedulerClient,
        session: aiohttp.ClientSession,
        ejector: Ejector,
        metrics: GatewayMetrics,
        max_attempts: int,
    ) -> None:
        super().__init__(scheduler, ejector, metrics, max_attempts)
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
    ) -> Served:
        tried: set[str] = set()
        failure = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                pick = await self.pick(model, version, tried)
            except NoNodeAvailable:
                if not tried:
                    raise
                break
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise DeadlineExceeded("deadline exceeded before a node could answer")
            if attempt > 1:
                self.metrics.retries.inc()
            reply = await self._send(pick, method, path_qs, body, headers, remaining_s)
            if reply is not None and reply.status != 503:
                self.ejector.succeeded(pick.node_id)
                return Served(reply, pick.node_id, attempt)
            failure = f"node {pick.node_id} " + ("answered 503" if reply else "was unreachable")
            tried.add(pick.node_id)
            self.failed(pick.node_id)
        raise Unavailable(f"no node could serve model '{model}' now; last failure: {failure}")

    async def _send(
        self, pick: Pick, method: str, path_qs: str, body: bytes, headers: CIMultiDict[str], timeout_s: float
    ) -> Reply | None:
        """The node's reply, or None when it gave no answer (worth another node)."""
        started = time.monotonic()
        self.scheduler.acquire(pick.node_id)
        try:
            reply = await exchange(self.session, method, pick.url + path_qs, body, headers, timeout_s)
        except UpstreamUnavailable as exc:
            log.warning("node unavailable", extra={"node": pick.node_id, "error": str(exc)})
            self.metrics.upstream.labels(pick.node_id, "unavailable").inc()
            return None
        except UpstreamTimeout as exc:
            self.metrics.upstream.labels(pick.node_id, "timeout").inc()
            raise DeadlineExceeded(f"node {pick.node_id} did not answer within the deadline") from exc
        finally:
            self.scheduler.release(pick.node_id)
        self.metrics.upstream.labels(pick.node_id, str(reply.status)).inc()
        self.metrics.upstream_latency.labels(pick.node_id).observe(time.monotonic() - started)
        return reply
