"""The gRPC hot path: send a unary call's bytes to a node chosen by the scheduler, retrying
elsewhere when it fails before answering; and choose the node a stream is pinned to."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import grpc

from tritonfleet.gateway.ejection import Ejector
from tritonfleet.gateway.errors import BadRequest, DeadlineExceeded, Unavailable
from tritonfleet.gateway.forwarding import NodeFailed, NodeRouting
from tritonfleet.gateway.grpc_channels import NodeChannel, NodeChannels
from tritonfleet.gateway.grpc_errors import GrpcAbort, Refusal
from tritonfleet.gateway.grpc_wire import Route, WireError, read_route
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.scheduler.client import SchedulerClient

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]


def route_of(message: bytes) -> Route:
    """The model and version a message is for; raises as `parse_route` and `check_version`."""
    route = parse_route(message)
    check_version(route)
    return route


def parse_route(message: bytes) -> Route:
    """The routing fields of a message; GrpcAbort (INVALID_ARGUMENT) when unreadable."""
    try:
        return read_route(message)
    except WireError as exc:
        raise GrpcAbort(Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"malformed message: {exc}")) from exc


def check_version(route: Route) -> None:
    """BadRequest when the version is not a number, as the HTTP side answers."""
    if route.version and not route.version.isdigit():
        raise BadRequest(f"invalid version '{route.version}' for model '{route.model}': expected a number")


@dataclass(frozen=True, slots=True)
class GrpcServed:
    """A node's answer: its message, or the status it answered with instead."""

    node_id: str
    attempts: int
    code: grpc.StatusCode
    details: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Pinned:
    node_id: str
    node: NodeChannel


class GrpcForwarder(NodeRouting):
    """Routes one call by model and version, and retries it on another node when the chosen one
    fails before answering (UNAVAILABLE: refused, reset, or Triton not ready), while the
    deadline allows. The same trade-off as the HTTP Forwarder: a retry after a reset may run an
    inference twice, the first answer having never reached the client.
    """

    def __init__(
        self,
        scheduler: SchedulerClient,
        channels: NodeChannels,
        ejector: Ejector,
        metrics: GatewayMetrics,
        max_attempts: int,
        connect_timeout_s: float,
    ) -> None:
        super().__init__(scheduler, ejector, metrics, max_attempts)
        self.channels = channels
        self.connect_timeout_s = connect_timeout_s

    async def forward(
        self,
        method: str,
        model: str,
        version: str | None,
        message: bytes,
        metadata: Metadata,
        deadline: float,
    ) -> GrpcServed:
        async def send(pinned: Pinned, attempt: int, remaining_s: float) -> GrpcServed:
            return await self._send(pinned, attempt, method, message, metadata, remaining_s)

        return await self.attempt(model, deadline, partial(self._choose, model, version), send)

    async def pin(self, model: str, version: str | None) -> Pinned:
        """A node for a stream, connected: a stream cannot be retried once it has begun, so the
        connection is made, and a dead node skipped, before the first request is sent."""
        tried: set[str] = set()
        for _ in range(self.max_attempts):
            pinned = await self._choose(model, version, tried)
            if pinned is None:
                break
            try:
                await asyncio.wait_for(pinned.node.channel.channel_ready(), self.connect_timeout_s)
            except TimeoutError:
                log.warning("node unreachable over gRPC", extra={"node": pinned.node_id})
                tried.add(pinned.node_id)
                self.failed(pinned.node_id)
                continue
            return pinned
        raise Unavailable(f"no node could take a stream for model '{model}' now")

    async def _choose(self, model: str, version: str | None, tried: set[str]) -> Pinned | None:
        """The next node to try and its channel, as `pick_untried`. Nodes without a gRPC address
        are skipped."""
        while (pick := await self.pick_untried(model, version, tried)) is not None:
            node = self.channels.get(pick.node_id)
            if node is not None:
                return Pinned(pick.node_id, node)
            tried.add(pick.node_id)
        return None

    async def _send(
        self,
        pinned: Pinned,
        attempt: int,
        method: str,
        message: bytes,
        metadata: Metadata,
        timeout_s: float,
    ) -> GrpcServed:
        """The node's answer, or the status it answered with; NodeFailed when it gave none."""
        node_id = pinned.node_id
        started = time.monotonic()
        self.scheduler.acquire(node_id)
        try:
            body = await pinned.node.unary(method)(message, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return self._answered_with(node_id, attempt, exc)
        finally:
            self.scheduler.release(node_id)
        self.ejector.succeeded(node_id)
        self.metrics.upstream.labels(node_id, "OK").inc()
        self.metrics.upstream_latency.labels(node_id).observe(time.monotonic() - started)
        return GrpcServed(node_id, attempt, grpc.StatusCode.OK, body=body)

    def _answered_with(self, node_id: str, attempt: int, exc: grpc.aio.AioRpcError) -> GrpcServed:
        code, details = exc.code(), exc.details() or ""
        self.metrics.upstream.labels(node_id, code.name).inc()
        if code is grpc.StatusCode.UNAVAILABLE:
            log.warning("node unavailable", extra={"node": node_id, "error": details})
            raise NodeFailed("was unavailable") from exc
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DeadlineExceeded(f"node {node_id} did not answer within the deadline") from exc
        self.ejector.succeeded(node_id)
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            details = f"the answer of node {node_id} exceeds gateway.grpc_max_message_bytes: {details}"
        return GrpcServed(node_id, attempt, code, details)
