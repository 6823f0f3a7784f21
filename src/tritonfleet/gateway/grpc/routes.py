"""The gateway's gRPC service: Triton's `inference.GRPCInferenceService`, answered for the cluster.

Every method is registered with a generic handler and no (de)serializers: the gateway receives
and relays bytes. It reads only the fields it routes on (`wire.py`), so an inference request
reaches the node exactly as the client serialized it.

| method | answered by |
|---|---|
| ServerLive, ServerReady | the gateway (ready: a healthy node serves a model) |
| ServerMetadata | a ready node |
| ModelReady, ModelMetadata, ModelConfig, ModelInfer | a node the scheduler picks for the model |
| ModelStatistics, RepositoryIndex | every node, merged |
| ModelStreamInfer | the node picked for the stream's first request, for the stream's life |
| RepositoryModelLoad, RepositoryModelUnload | every node whose repository has the model (model_control.py) |
| shared memory, trace, log | the gateway, as Triton with client shared memory off (unrouted.py) |
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import NoReturn, TypeAlias

import grpc
from tritonclient.grpc import service_pb2

from tritonfleet.gateway import access_log
from tritonfleet.gateway.errors import GatewayError, Unavailable
from tritonfleet.gateway.grpc import unrouted
from tritonfleet.gateway.grpc.channels import SERVICE, NodeChannel, NodeChannels
from tritonfleet.gateway.grpc.cluster import fan_out, merge_index, merge_statistics
from tritonfleet.gateway.grpc.errors import GrpcAbort, Refusal, refusal
from tritonfleet.gateway.grpc.forwarding import GrpcForwarder, GrpcServed, route_of
from tritonfleet.gateway.grpc.metadata import (
    CHARGE,
    CREDIT,
    NODE,
    REQUEST_ID,
    CallRecord,
    Incoming,
    read_metadata,
)
from tritonfleet.gateway.grpc.model_control import GrpcModelControl
from tritonfleet.gateway.grpc.streams import StreamRelay
from tritonfleet.gateway.grpc.wire import Route
from tritonfleet.gateway.model_control import Action
from tritonfleet.gateway.paid import Charged, PaidPath
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.scheduler.errors import SchedulerError, UnknownModel

Context: TypeAlias = grpc.aio.ServicerContext
Unary: TypeAlias = Callable[[bytes, Context], Awaitable[bytes]]
Trailing: TypeAlias = tuple[tuple[str, str], ...]

_LIVE = service_pb2.ServerLiveResponse(live=True).SerializeToString()
_READY = service_pb2.ServerReadyResponse(ready=True).SerializeToString()
_NOT_READY = service_pb2.ServerReadyResponse(ready=False).SerializeToString()
_MODEL_NOT_READY = service_pb2.ModelReadyResponse(ready=False).SerializeToString()


class GrpcRoutes:
    """Handlers for every method, over the state the two fronts share."""

    def __init__(self, core: GatewayCore, forwarder: GrpcForwarder, channels: NodeChannels) -> None:
        self.core = core
        self.config = core.config
        self.metrics = core.metrics
        self.forwarder = forwarder
        self.channels = channels
        self.streams = StreamRelay(forwarder, core.paid)
        self.model_control = GrpcModelControl(core, channels)
        self.access_log = access_log.Sampler(core.config)

    def handler(self) -> grpc.GenericRpcHandler:
        unary: dict[str, Unary] = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ServerMetadata": self.server_metadata,
            "ModelReady": self.model_ready,
            "ModelMetadata": partial(self.model_scoped, "ModelMetadata"),
            "ModelConfig": partial(self.model_scoped, "ModelConfig"),
            "ModelStatistics": self.model_statistics,
            "RepositoryIndex": self.repository_index,
            "ModelInfer": self.model_infer,
            "RepositoryModelLoad": partial(self.model_control.serve, Action.LOAD),
            "RepositoryModelUnload": partial(self.model_control.serve, Action.UNLOAD),
            **unrouted.handlers(),
        }
        methods = {name: grpc.unary_unary_rpc_method_handler(_aborting(call)) for name, call in unary.items()}
        methods["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(self.model_stream_infer)
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    async def server_live(self, message: bytes, context: Context) -> bytes:
        return _LIVE

    async def server_ready(self, message: bytes, context: Context) -> bytes:
        return _READY if self.core.ready() else _NOT_READY

    async def server_metadata(self, message: bytes, context: Context) -> bytes:
        """A node's own metadata: the cluster speaks the protocol version its nodes speak."""
        for node_id, node in self._schedulable():
            answers = await self._fan_out([(node_id, node)], "ServerMetadata", message)
            if answers:
                return answers[0]
        raise Unavailable("no node is serving now")

    async def model_ready(self, message: bytes, context: Context) -> bytes:
        """As Triton: a model no node can serve is not ready, which is no error."""
        try:
            return await self.model_scoped("ModelReady", message, context)
        except (SchedulerError, Unavailable):
            return _MODEL_NOT_READY

    async def model_scoped(self, method: str, message: bytes, context: Context) -> bytes:
        route = route_of(message)
        incoming = read_metadata(context.invocation_metadata())
        served = await self.forwarder.forward(
            method, route.model, route.version or None, message, incoming.upstream, self._deadline(context)
        )
        return _answer(context, served, ((REQUEST_ID, incoming.request_id), (NODE, served.node_id)))

    async def model_statistics(self, message: bytes, context: Context) -> bytes:
        route = route_of(message)
        version = route.version or None
        nodes = self._schedulable()
        if route.model:
            serving = {node.node_id for node in self.core.watcher.nodes if node.serves(route.model, version)}
            nodes = [(node_id, node) for node_id, node in nodes if node_id in serving]
            if not nodes:
                raise UnknownModel.of(route.model, version)
        return merge_statistics(await self._fan_out(nodes, "ModelStatistics", message))

    async def repository_index(self, message: bytes, context: Context) -> bytes:
        return merge_index(await self._fan_out(self._schedulable(), "RepositoryIndex", message))

    async def model_infer(self, message: bytes, context: Context) -> bytes:
        started = time.monotonic()
        incoming = read_metadata(context.invocation_metadata())
        record = CallRecord("ModelInfer", incoming.request_id)
        self.metrics.in_flight.inc()
        try:
            route = route_of(message)
            record.model, record.version = route.model, route.version
            served, charged = await self._infer(message, route, incoming, self._deadline(context))
            record.code, record.node_id = served.code, served.node_id
            return _answer(context, served, _trailing(incoming.request_id, served.node_id, charged))
        except (GatewayError, SchedulerError) as exc:
            refused = _with_request_id(refusal(exc), incoming.request_id)
            record.code = refused.code
            raise GrpcAbort(refused) from exc
        except asyncio.CancelledError:
            record.code = _cancelled(context)
            raise
        finally:
            self.metrics.in_flight.dec()
            self._observe(record, started)

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        started = time.monotonic()
        incoming = read_metadata(context.invocation_metadata())
        record = CallRecord("ModelStreamInfer", incoming.request_id)
        refused = None
        self.metrics.in_flight.inc()
        try:
            async for response in self.streams.serve(
                requests, context, incoming, record, self._deadline(context)
            ):
                yield response
        except (GatewayError, SchedulerError) as exc:
            refused = _with_request_id(refusal(exc), incoming.request_id)
            record.code = refused.code
        except asyncio.CancelledError:
            record.code = _cancelled(context)
            raise
        finally:
            self.metrics.in_flight.dec()
            self._observe(record, started)
        if refused is not None:
            await _abort(context, refused)

    async def _infer(
        self, message: bytes, route: Route, incoming: Incoming, deadline: float
    ) -> tuple[GrpcServed, Charged | None]:
        paid = self.core.paid
        if paid is None:
            return await self._forward_infer(message, route, incoming, deadline), None
        return await self._paid_infer(paid, message, route, incoming, deadline)

    async def _paid_infer(
        self, paid: PaidPath, message: bytes, route: Route, incoming: Incoming, deadline: float
    ) -> tuple[GrpcServed, Charged | None]:
        payer = paid.authenticate(incoming.authorization)
        held = paid.hold(
            payer, incoming.request_id, route.model, route.version or None, incoming.request_id_from_client
        )
        async with held:
            served = await self._forward_infer(message, route, incoming, deadline)
            if served.code is not grpc.StatusCode.OK:
                return served, None
            return served, await held.charge()

    async def _forward_infer(
        self, message: bytes, route: Route, incoming: Incoming, deadline: float
    ) -> GrpcServed:
        return await self.forwarder.forward(
            "ModelInfer", route.model, route.version or None, message, incoming.upstream, deadline
        )

    def _deadline(self, context: Context) -> float:
        """The client's deadline, or the gateway's own if sooner."""
        timeout_s = self.config.request_timeout_s
        remaining_s = context.time_remaining()
        if remaining_s is not None:
            timeout_s = min(timeout_s, remaining_s)
        return time.monotonic() + timeout_s

    def _schedulable(self) -> list[tuple[str, NodeChannel]]:
        nodes = []
        for node in self.core.schedulable():
            channel = self.channels.get(node.node_id)
            if channel is not None:
                nodes.append((node.node_id, channel))
        return nodes

    async def _fan_out(
        self, nodes: list[tuple[str, NodeChannel]], method: str, message: bytes
    ) -> list[bytes]:
        return await fan_out(nodes, method, message, self.config.fan_out_timeout_s, self.core.admin_key)

    def _observe(self, record: CallRecord, started: float) -> None:
        duration_s = time.monotonic() - started
        route = f"grpc:{record.method}"
        self.metrics.requests.labels(route, record.code.name).inc()
        self.metrics.latency.labels(route).observe(duration_s)
        if not self.access_log.wanted():
            return
        line = {
            "request_id": record.request_id,
            "route": route,
            "model": record.model,
            "version": record.version or None,
            "status": record.code.name,
            "node": record.node_id,
            "duration_ms": round(duration_s * 1000, 3),
        }
        # As for HTTP: logged on the loop's next turn, once the answer is on its way.
        asyncio.get_running_loop().call_soon(access_log.write, line)


def _cancelled(context: Context) -> grpc.StatusCode:
    """Why gRPC cancelled the call: the client's deadline ran out, or the client went away."""
    remaining_s = context.time_remaining()
    if remaining_s is not None and remaining_s <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _answer(context: Context, served: GrpcServed, trailing: Trailing) -> bytes:
    """The node's message, or its status relayed as the gateway's answer."""
    if served.code is not grpc.StatusCode.OK:
        raise GrpcAbort(Refusal(served.code, served.details, trailing))
    context.set_trailing_metadata(trailing)
    return served.body


def _trailing(request_id: str, node_id: str, charged: Charged | None) -> Trailing:
    """As the HTTP answer's headers: request id, serving node, and what a paid call cost."""
    trailing: Trailing = ((REQUEST_ID, request_id), (NODE, node_id))
    if charged is not None:
        trailing += ((CHARGE, str(charged.amount)), (CREDIT, str(charged.remaining)))
    return trailing


def _with_request_id(refused: Refusal, request_id: str) -> Refusal:
    if any(key == REQUEST_ID for key, _ in refused.trailing):
        return refused
    return Refusal(refused.code, refused.details, ((REQUEST_ID, request_id), *refused.trailing))


def _aborting(handler: Unary) -> Unary:
    """The handler, answering the gateway's own errors with their gRPC status."""

    async def handle(message: bytes, context: Context) -> bytes:
        try:
            return await handler(message, context)
        except (GatewayError, SchedulerError) as exc:
            refused = refusal(exc)
        await _abort(context, refused)

    return handle


async def _abort(context: Context, refused: Refusal) -> NoReturn:
    await context.abort(refused.code, refused.details, trailing_metadata=refused.trailing)
    raise AssertionError("unreachable: abort raises")
