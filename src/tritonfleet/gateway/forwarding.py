"""The hot path: send a request to a node chosen by the scheduler, retrying elsewhere on failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import aiohttp
from multidict import CIMultiDict

from tritonfleet.gateway.ejection import Ejector
from tritonfleet.gateway.errors import DeadlineExceeded, Unavailable
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.proxy import Reply, UpstreamTimeout, UpstreamUnavailable, exchange
from tritonfleet.scheduler.client import Pick, SchedulerClient
from tritonfleet.scheduler.errors import NoNodeAvailable

log = logging.getLogger(__name__)


class _Routed(Protocol):
    @property
    def node_id(self) -> str: ...


_Node = TypeVar("_Node", bound=_Routed)
_Answer = TypeVar("_Answer")


@dataclass(frozen=True, slots=True)
class Served:
    reply: Reply
    node_id: str
    attempts: int


class NodeFailed(Exception):
    """The chosen node gave no answer (refused, reset, unavailable): another node may."""


class NodeRouting:
    """What the HTTP and gRPC forwarders share: the scheduler's pick, steering clear of the
    nodes a request already tried and of ejected ones; the attempts on one node after another
    while the deadline allows; and the ejection of a node that fails."""

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

    async def pick_untried(self, model: str, version: str | None, tried: set[str]) -> Pick | None:
        """The next node to try; None once every node was tried (NoNodeAvailable if none was)."""
        try:
            return await self.pick(model, version, tried)
        except NoNodeAvailable:
            if not tried:
                raise
            return None

    async def attempt(
        self,
        model: str,
        deadline: float,
        choose: Callable[[set[str]], Awaitable[_Node | None]],
        send: Callable[[_Node, int, float], Awaitable[_Answer]],
    ) -> _Answer:
        """`send(node, attempt, remaining_s)` to the nodes `choose(tried)` gives, one after
        another while one raises NodeFailed, up to `max_attempts` and the deadline."""
        tried: set[str] = set()
        failure = "none"
        for attempt in range(1, self.max_attempts + 1):
            node = await choose(tried)
            if node is None:
                break
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise DeadlineExceeded("deadline exceeded before a node could answer")
            if attempt > 1:
                self.metrics.retries.inc()
            try:
                return await send(node, attempt, remaining_s)
            except NodeFailed as exc:
                failure = f"node {node.node_id} {exc}"
            tried.add(node.node_id)
            self.failed(node.node_id)
        raise Unavailable(f"no node could serve model '{model}' now; last failure: {failure}")

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
        async def send(pick: Pick, attempt: int, remaining_s: float) -> Served:
            return await self._send(pick, attempt, method, path_qs, body, headers, remaining_s)

        return await self.attempt(model, deadline, partial(self.pick_untried, model, version), send)

    async def _send(
        self,
        pick: Pick,
        attempt: int,
        method: str,
        path_qs: str,
        body: bytes,
        headers: CIMultiDict[str],
        timeout_s: float,
    ) -> Served:
        started = time.monotonic()
        self.scheduler.acquire(pick.node_id)
        try:
            reply = await exchange(self.session, method, pick.url + path_qs, body, headers, timeout_s)
        except UpstreamUnavailable as exc:
            log.warning("node unavailable", extra={"node": pick.node_id, "error": str(exc)})
            self.metrics.upstream.labels(pick.node_id, "unavailable").inc()
            raise NodeFailed("was unreachable") from exc
        except UpstreamTimeout as exc:
            self.metrics.upstream.labels(pick.node_id, "timeout").inc()
            raise DeadlineExceeded(f"node {pick.node_id} did not answer within the deadline") from exc
        finally:
            self.scheduler.release(pick.node_id)
        self.metrics.upstream.labels(pick.node_id, str(reply.status)).inc()
        self.metrics.upstream_latency.labels(pick.node_id).observe(time.monotonic() - started)
        if reply.status == 503:
            raise NodeFailed("answered 503")
        self.ejector.succeeded(pick.node_id)
        return Served(reply, pick.node_id, attempt)
