"""`RepositoryModelLoad` and `RepositoryModelUnload` for the whole cluster, over gRPC: the flow
is gateway/model_control.py; here are its calls to each node's Triton, and the answers rendered
as Triton's. These messages are small and rare, so they are decoded with Triton's classes."""

from __future__ import annotations

import logging
from collections.abc import Collection

import grpc
from tritonclient.grpc import service_pb2

from tritonfleet.gateway.grpc.channels import NodeChannels
from tritonfleet.gateway.grpc.errors import GrpcAbort, Refusal
from tritonfleet.gateway.grpc.metadata import read_metadata
from tritonfleet.gateway.grpc.wire import LENGTH, WireError, fields
from tritonfleet.gateway.model_control import Action, ModelControl, NodeAnswer
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.protocol import NodeView
from tritonfleet.triton_admin import GRPC_ADMIN_METADATA

log = logging.getLogger(__name__)

METHODS = {Action.LOAD: "RepositoryModelLoad", Action.UNLOAD: "RepositoryModelUnload"}
# `model_name` in both RepositoryModelLoadRequest and RepositoryModelUnloadRequest.
MODEL_NAME = 2
# Both responses are empty messages.
_DONE = b""
_INDEX = service_pb2.RepositoryIndexRequest().SerializeToString()
FAILED_NODES = "x-tritonfleet-failed-nodes"


class GrpcNodeControl:
    """One load or unload, sent as the client serialized it to each node's Triton with the admin
    key (tritonfleet.triton_admin); the client's metadata, its credential first, stays here."""

    def __init__(
        self,
        channels: NodeChannels,
        admin_key: str,
        method: str,
        message: bytes,
        index_timeout_s: float,
        timeout_s: float,
    ) -> None:
        self.channels = channels
        self.metadata = ((GRPC_ADMIN_METADATA, admin_key),)
        self.method = method
        self.message = message
        self.index_timeout_s = index_timeout_s
        self.timeout_s = timeout_s

    async def holdings(self, node: NodeView) -> Collection[str] | None:
        channel = self.channels.get(node.node_id)
        if channel is None:
            return None
        try:
            answer = await channel.unary("RepositoryIndex")(
                _INDEX, timeout=self.index_timeout_s, metadata=self.metadata
            )
            index = service_pb2.RepositoryIndexResponse.FromString(answer)
        except grpc.aio.AioRpcError as exc:
            log.warning("repository index unread", extra={"node": node.node_id, "error": str(exc)})
            return None
        return {entry.name for entry in index.models}

    async def apply(self, node: NodeView) -> NodeAnswer[grpc.StatusCode]:
        channel = self.channels.get(node.node_id)
        if channel is None:
            return NodeAnswer(
                node.node_id, False, grpc.StatusCode.UNAVAILABLE, "has no gRPC port", answered=False
            )
        try:
            await channel.unary(self.method)(self.message, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                why = f"no answer within {self.timeout_s:g} s"
                return NodeAnswer(node.node_id, False, code, why, answered=False)
            if code is grpc.StatusCode.UNAVAILABLE and (channel.target in details or "connect" in details):
                # gRPC's own words about the connection, which name the node's address.
                log.warning("model control: no answer", extra={"node": node.node_id, "error": details})
                return NodeAnswer(node.node_id, False, code, "could not be reached", answered=False)
            return NodeAnswer(node.node_id, False, code, details)
        return NodeAnswer(node.node_id, True, grpc.StatusCode.OK)


class GrpcModelControl:
    """The handlers of the two methods."""

    def __init__(self, core: GatewayCore, channels: NodeChannels) -> None:
        self.core = core
        self.channels = channels
        self.flow = ModelControl(core.watcher, core.cluster_token, core.config.fan_out_timeout_s)

    async def serve(self, action: Action, message: bytes, context: grpc.aio.ServicerContext) -> bytes:
        model = model_name(message)
        config = self.core.config
        # The client's deadline, or the gateway's own if sooner.
        timeout_s, remaining_s = config.request_timeout_s, context.time_remaining()
        if remaining_s is not None:
            timeout_s = min(timeout_s, remaining_s)
        control = GrpcNodeControl(
            self.channels, self.core.admin_key, METHODS[action], message, config.fan_out_timeout_s, timeout_s
        )
        authorization = read_metadata(context.invocation_metadata()).authorization
        outcome = await self.flow.apply(authorization, action, model, self.core.schedulable(), control)
        if outcome.ok:
            return _DONE
        relayed = outcome.relayed()
        if relayed is not None:
            raise GrpcAbort(Refusal(relayed.code, relayed.error))
        trailing = ((FAILED_NODES, outcome.failed_nodes),)
        raise GrpcAbort(Refusal(outcome.code(grpc.StatusCode.INTERNAL), outcome.message(), trailing))


def model_name(message: bytes) -> str:
    """The model a load or unload request names; WireError (INVALID_ARGUMENT) when unreadable."""
    name = b""
    for number, wire_type, start, end in fields(message):
        if number == MODEL_NAME and wire_type == LENGTH:
            name = message[start:end]
    try:
        return name.decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"model_name is not UTF-8: {exc}") from exc
