"""The gRPC hot path: a unary call's bytes to a node, its answer back, retried elsewhere by
`NodeRouting` when the node gives none; and the node a stream is pinned to."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from tritonfleet.gateway.errors import DeadlineExceeded, MalformedRequest
from tritonfleet.gateway.grpc.channels import NodeChannel, NodeChannels
from tritonfleet.gateway.grpc.errors import GrpcAbort, Refusal
from tritonfleet.gateway.grpc.metadata import NODE
from tritonfleet.gateway.grpc.wire import Route, WireError, read_route
from tritonfleet.gateway.routing import NodeFailed, NodeRouting
from tritonfleet.gateway.sequences import SequenceLost, SequenceRequest, from_grpc
from tritonfleet.scheduler.client import Pick

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]
_Answer = TypeVar("_Answer")


def route_of(message: bytes) -> Route:
    """The model and version a message is for; raises as `parse_route` and `check_version`."""
    route = parse_route(message)
    check_version(route)
    return route


def parse_route(message: bytes) -> Route:
    """The routing fields of a message; MalformedRequest (INVALID_ARGUMENT) when unreadable."""
    try:
        return read_route(message)
    except WireError as exc:
        raise MalformedRequest(f"malformed message: {exc}") from exc


def check_version(route: Route) -> None:
    """MalformedRequest when the version is not a number, as the HTTP side answers."""
    if route.version and not route.version.isdigit():
        raise MalformedRequest(
            f"invalid version '{route.version}' for model '{route.model}': expected a number"
        )


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
    # Pinned by its first request's sequence: a failure of the node loses sequences.
    stateful: bool = False


class GrpcForwarder:
    """Sends a call to the node `routing` picks for its model and version, over the node's
    channel; a node that is UNAVAILABLE (refused, reset, or Triton not ready) is a failure, and
    the call goes to another one. Nodes without a gRPC address are skipped."""

    def __init__(self, routing: NodeRouting, channels: NodeChannels, connect_timeout_s: float) -> None:
        self.routing = routing
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
        async def send(pick: Pick, attempt: int, remaining_s: float) -> GrpcServed:
            return await self._send(pick, attempt, method, message, metadata, remaining_s)

        sequence = self._sequence(model, message) if method == "ModelInfer" else None
        return await self._attempt(model, version, deadline, send, sequence)

    async def pin(self, model: str, version: str | None, deadline: float, first: bytes = b"") -> Pinned:
        """A node for a stream, connected: a stream cannot be retried once it has begun, so the
        connection is made, and a dead node skipped, before the first request is sent. A stream
        whose `first` request is of a sequence goes to that sequence's node, with no retry: the
        stream's other sequences live on that node too, which keeps them whole for the stream's
        life (a sequence is to be continued on the stream that started it)."""
        sequence = self._sequence(model, first)

        async def connect(pick: Pick, attempt: int, remaining_s: float) -> Pinned:
            node = self._channel(pick)
            try:
                await asyncio.wait_for(node.channel.channel_ready(), min(self.connect_timeout_s, remaining_s))
            except TimeoutError as exc:
                log.warning("node unreachable over gRPC", extra={"node": pick.node_id})
                raise NodeFailed("was unreachable over gRPC") from exc
            return Pinned(pick.node_id, node, sequence is not None)

        return await self._attempt(model, version, deadline, connect, sequence)

    def _sequence(self, model: str, message: bytes) -> SequenceRequest | None:
        """Only a stateful model's requests are read for their sequence id."""
        return from_grpc(model, message) if message and model in self.routing.stateful else None

    async def _attempt(
        self,
        model: str,
        version: str | None,
        deadline: float,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        sequence: SequenceRequest | None,
    ) -> _Answer:
        try:
            return await self.routing.attempt(model, version, deadline, send, self._reachable, sequence)
        except SequenceLost as exc:
            trailing = ((NODE, str(exc.figures["node"])),)
            raise GrpcAbort(Refusal(grpc.StatusCode.ABORTED, str(exc), trailing)) from exc

    def _reachable(self, pick: Pick) -> bool:
        return self.channels.get(pick.node_id) is not None

    def _channel(self, pick: Pick) -> NodeChannel:
        node = self.channels.get(pick.node_id)
        if node is None:
            raise NodeFailed("has no gRPC address")
        return node

    async def _send(
        self,
        pick: Pick,
        attempt: int,
        method: str,
        message: bytes,
        metadata: Metadata,
        timeout_s: float,
    ) -> GrpcServed:
        """The node's answer, or the status it answered with; NodeFailed when it gave none."""
        node_id, metrics = pick.node_id, self.routing.metrics
        started = time.monotonic()
        try:
            body = await self._channel(pick).unary(method)(message, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return self._answered_with(node_id, attempt, exc)
        metrics.upstream.labels(node_id, "OK").inc()
        metrics.upstream_latency.labels(node_id).observe(time.monotonic() - started)
        return GrpcServed(node_id, attempt, grpc.StatusCode.OK, body=body)

    def _answered_with(self, node_id: str, attempt: int, exc: grpc.aio.AioRpcError) -> GrpcServed:
        code, details = exc.code(), exc.details() or ""
        self.routing.metrics.upstream.labels(node_id, code.name).inc()
        if code is grpc.StatusCode.UNAVAILABLE:
            log.warning("node unavailable", extra={"node": node_id, "error": details})
            raise NodeFailed("was unavailable") from exc
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DeadlineExceeded(f"node {node_id} did not answer within the deadline") from exc
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            details = f"the answer of node {node_id} exceeds gateway.grpc_max_message_bytes: {details}"
        return GrpcServed(node_id, attempt, code, details)
