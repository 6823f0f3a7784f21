"""One grpc.aio channel per node, to its Triton's gRPC port, following the cluster's view.

Every gRPC call the gateway makes to a node goes through here. Calls are generic: bytes in,
bytes out, no serializer on either side, so what a client sent is what the node receives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tritonfleet.net import host_port
from tritonfleet.protocol import NodeView

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"


def channel_options(max_message_bytes: int, connect_timeout_s: float) -> list[tuple[str, Any]]:
    connect_ms = max(1, int(connect_timeout_s * 1000))
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # gRPC backs off up to two minutes between reconnections by default; a node restarted on
        # the same address should be back in rotation within a second or two. The minimum is
        # also the time a connection attempt may take.
        ("grpc.initial_reconnect_backoff_ms", connect_ms),
        ("grpc.min_reconnect_backoff_ms", connect_ms),
        ("grpc.max_reconnect_backoff_ms", max(connect_ms, 2000)),
    ]


@dataclass
class NodeChannel:
    """A node's channel, and the generic callables made on it once."""

    target: str
    channel: grpc.aio.Channel
    _unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = field(default_factory=dict)
    _stream: grpc.aio.StreamStreamMultiCallable | None = None

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        call = self._unary.get(method)
        if call is None:
            call = self._unary[method] = self.channel.unary_unary(f"/{SERVICE}/{method}")
        return call

    def stream(self) -> grpc.aio.StreamStreamMultiCallable:
        if self._stream is None:
            self._stream = self.channel.stream_stream(f"/{SERVICE}/ModelStreamInfer")
        return self._stream


class NodeChannels:
    """Channels by node id; a node that leaves the view, or comes back at another address, has
    its old channel closed after `close_grace_s` (calls still on it may finish meanwhile)."""

    def __init__(self, options: list[tuple[str, Any]], close_grace_s: float) -> None:
        self.options = options
        self.close_grace_s = close_grace_s
        self._targets: dict[str, str] = {}
        self._open: dict[str, NodeChannel] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def update(self, nodes: Iterable[NodeView]) -> None:
        """Follow the node list (a NodeWatcher listener)."""
        self._targets = {
            node.node_id: host_port(node.triton_grpc_url) for node in nodes if node.triton_grpc_url
        }
        for node_id, open_channel in list(self._open.items()):
            if self._targets.get(node_id) != open_channel.target:
                del self._open[node_id]
                self._close_later(node_id, open_channel)

    def get(self, node_id: str) -> NodeChannel | None:
        """The node's channel, opened on first use; None when it has no gRPC address."""
        open_channel = self._open.get(node_id)
        if open_channel is not None:
            return open_channel
        target = self._targets.get(node_id)
        if target is None:
            return None
        channel = grpc.aio.insecure_channel(target, options=self.options)
        open_channel = self._open[node_id] = NodeChannel(target, channel)
        return open_channel

    async def aclose(self) -> None:
        for node_id, open_channel in self._open.items():
            self._close_later(node_id, open_channel, grace_s=0)
        self._open.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _close_later(self, node_id: str, open_channel: NodeChannel, grace_s: float | None = None) -> None:
        grace = self.close_grace_s if grace_s is None else grace_s
        task = asyncio.get_running_loop().create_task(
            _close(node_id, open_channel, grace), name=f"close gRPC channel {node_id}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close(node_id: str, open_channel: NodeChannel, grace_s: float) -> None:
    try:
        await open_channel.channel.close(grace=grace_s)
    except Exception:
        log.warning("closing a gRPC channel failed", exc_info=True, extra={"node": node_id})
