"""Cluster-wide gRPC answers built from every node's own: repository index and statistics.

These are off the inference path and small, so they are decoded with Triton's message classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2

from tritonfleet.gateway.grpc.channels import NodeChannel
from tritonfleet.triton_admin import GRPC_ADMIN_METADATA

log = logging.getLogger(__name__)

# Summed over nodes like the HTTP merge: counts and nanoseconds add, the latest inference wins.
_LATEST = "last_inference"
_KEYS = {"name", "version", "batch_size"}


async def fan_out(
    nodes: Iterable[tuple[str, NodeChannel]], method: str, message: bytes, timeout_s: float, admin_key: str
) -> list[bytes]:
    """Each reachable node's answer to one call; nodes that fail are logged and skipped.
    `admin_key` opens Triton's restricted APIs (the repository index is one)."""
    metadata = ((GRPC_ADMIN_METADATA, admin_key),)

    async def ask(node_id: str, node: NodeChannel) -> bytes | None:
        try:
            answer: bytes = await node.unary(method)(message, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "node did not answer", extra={"node": node_id, "method": method, "error": exc.details()}
            )
            return None
        return answer

    answers = await asyncio.gather(*(ask(node_id, node) for node_id, node in nodes))
    return [answer for answer in answers if answer is not None]


def merge_index(answers: Iterable[bytes]) -> bytes:
    """One entry per model version, READY when any node has it READY, ordered by name."""
    merged: dict[tuple[str, str], Any] = {}
    for answer in answers:
        for entry in service_pb2.RepositoryIndexResponse.FromString(answer).models:
            key = (entry.name, entry.version)
            if key not in merged or entry.state == "READY":
                merged[key] = entry
    index = service_pb2.RepositoryIndexResponse()
    index.models.extend(merged[key] for key in sorted(merged))
    return bytes(index.SerializeToString())


def merge_statistics(answers: Iterable[bytes]) -> bytes:
    merged: dict[tuple[str, str], Any] = {}
    for answer in answers:
        for stats in service_pb2.ModelStatisticsResponse.FromString(answer).model_stats:
            key = (stats.name, stats.version)
            if key in merged:
                _add(merged[key], stats)
            else:
                merged[key] = stats
    total = service_pb2.ModelStatisticsResponse()
    total.model_stats.extend(merged[key] for key in sorted(merged))
    return bytes(total.SerializeToString())


def _add(total: Any, part: Any) -> None:
    """Adds every number of `part` into `total`, at any depth; batch statistics by batch size,
    response statistics by key, and memory usage appended (each node's own)."""
    for field, value in part.ListFields():
        name = field.name
        if name in _KEYS:
            continue
        if name == _LATEST:
            total.last_inference = max(total.last_inference, value)
        elif name == "batch_stats":
            _add_by_batch_size(total.batch_stats, value)
        elif name == "memory_usage":
            total.memory_usage.extend(value)
        elif name == "response_stats":
            for key, stats in value.items():
                _add(total.response_stats[key], stats)
        elif field.message_type is not None:
            _add(getattr(total, name), value)
        else:
            setattr(total, name, getattr(total, name) + value)


def _add_by_batch_size(total: Any, part: Iterable[Any]) -> None:
    by_size = {batch.batch_size: batch for batch in total}
    for batch in part:
        if batch.batch_size in by_size:
            _add(by_size[batch.batch_size], batch)
        else:
            total.add().CopyFrom(batch)
